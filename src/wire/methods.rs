//! The method table: how the service treats each RPC, read once at start-up from the
//! `(supportdesk.v1.method)` option that every RPC declares beside itself in the proto
//! (`proto/supportdesk/v1/method_policy.proto`). The auth layer, the rate limiter, the
//! idempotency-key layer, the REST success status and health registration all read this table,
//! so a fact about an RPC is written once, next to the RPC.
//!
//! RPCs of vendored services the API serves (`google.longrunning.Operations`) cannot carry our
//! option: our own proto declares them instead with the file option
//! `(supportdesk.v1.foreign_method)`, naming each RPC by its full name; such a service is then an
//! API service like ours, and every one of its RPCs must be declared.
//!
//! Health and reflection are not ours to annotate: their methods are read from the descriptor
//! sets tonic ships and declared here as infrastructure (public, counted against no quota).
//!
//! Loading fails, and so the service refuses to start, when an RPC of ours has no declaration,
//! leaves a field of it unspecified, or combines fields no code honours (a public RPC on a
//! caller's quota, an authenticated one on an anonymous quota).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::LazyLock;

use prost_reflect::{
    DescriptorPool, DynamicMessage, Kind, MessageDescriptor, MethodDescriptor, Value,
};

use crate::domain::Role;
use crate::wire::http_rule::PathTemplate;
use crate::wire::proto;

/// The package whose services are the API.
pub const API_PACKAGE: &str = "supportdesk.v1";

/// The full name of the method option every API RPC declares.
const METHOD_OPTION: &str = "supportdesk.v1.method";

/// The full name of the file option declaring RPCs of other packages.
const FOREIGN_METHOD_OPTION: &str = "supportdesk.v1.foreign_method";

/// The full name of the option mapping an RPC to REST.
const HTTP_OPTION: &str = "google.api.http";

/// Who may call an RPC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials.
    Public,
    /// A caller with an access token or an API key.
    Authenticated,
}

/// Which rate-limit quota a call counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quota {
    /// None: probes and tooling (health, reflection).
    Exempt,
    /// The caller's read quota.
    Read,
    /// The caller's write quota.
    Write,
    /// The client IP's quota for anonymous calls.
    Public,
    /// The client IP's failed-login quota (the other login quotas apply inside Login).
    Login,
    /// The client IP's quota for the payment provider's webhook deliveries.
    Webhook,
}

/// Whether an RPC honours an `idempotency-key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotency {
    /// A key is not read at all.
    Ignored,
    /// A key is honoured when sent.
    Optional,
    /// A call without a key is refused before it runs.
    Required,
}

/// Whether a call that may or may not have run (its connection reset, or UNAVAILABLE) may be
/// sent again: what Envoy's retry routes and the client service config are generated from
/// ([`crate::wire::retry_rule`]). A call that never reached the service may always be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Running it twice is running it once: reads, and writes deduplicated by the request.
    Safe,
    /// Only with an `idempotency-key`, whose replay makes a repeat harmless.
    WithKey,
    /// Never: a repeat may act twice or answer differently.
    Never,
}

/// The HTTP status a success answers with through Envoy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpSuccess {
    Ok,
    Created,
    NoContent,
    Accepted,
}

impl HttpSuccess {
    /// The status code, as Envoy's response filter reads it from `x-http-status`; `None` for
    /// 200, which needs no header.
    pub fn status_code(self) -> Option<&'static str> {
        match self {
            Self::Ok => None,
            Self::Created => Some("201"),
            Self::NoContent => Some("204"),
            Self::Accepted => Some("202"),
        }
    }
}

/// What admission reads ahead for an RPC, in its own round trip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prefetch {
    /// The ticket cache's entry for the ticket named by the request's string field `id`
    /// (checked at start-up to exist in the request message): its field number.
    Ticket { id_field: u32 },
}

/// The REST bindings of an RPC whose path templates name request fields
/// (`PATCH /v1/tickets/{ticket.id}`): what the path-binding layer needs to check that a
/// transcoded request names the resource its path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathBindings {
    /// The request message.
    pub request: MessageDescriptor,
    /// Each binding (the rule and its `additional_bindings`) with at least one variable.
    pub bindings: Vec<PathBinding>,
}

/// One `google.api.http` binding with variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathBinding {
    /// The HTTP method, upper case: `PATCH`.
    pub http_method: String,
    pub template: PathTemplate,
    /// The rule's `body`: `*`, a field name, or empty for none.
    pub body: String,
    /// Whether the body is a `google.api.HttpBody` (raw bytes of any type, no JSON).
    pub raw_body: bool,
}

impl PathBindings {
    /// The binding a transcoded request was matched by: its HTTP method (when known) and a
    /// template its original path (without the query) matches.
    pub fn binding_for(&self, http_method: Option<&str>, path: &str) -> Option<&PathBinding> {
        self.bindings.iter().find(|binding| {
            http_method.is_none_or(|method| method.eq_ignore_ascii_case(&binding.http_method))
                && binding.template.captures(path).is_some()
        })
    }
}

/// The value of the scalar field at `path` (`ticket.id`) of `message`, as text; `None` when the
/// path does not lead to a scalar (checked at start-up for every variable).
pub fn field_text(message: &DynamicMessage, path: &str) -> Option<String> {
    let (parents, leaf) = match path.rsplit_once('.') {
        Some((parents, leaf)) => (Some(parents), leaf),
        None => (None, path),
    };
    let mut current = message.clone();
    for name in parents.into_iter().flat_map(|parents| parents.split('.')) {
        let child = current.get_field_by_name(name)?.as_message()?.clone();
        current = child;
    }
    match current.get_field_by_name(leaf)?.as_ref() {
        Value::String(text) => Some(text.clone()),
        Value::I32(number) | Value::EnumNumber(number) => Some(number.to_string()),
        Value::I64(number) => Some(number.to_string()),
        Value::U32(number) => Some(number.to_string()),
        Value::U64(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::F32(_)
        | Value::F64(_)
        | Value::Bytes(_)
        | Value::Message(_)
        | Value::List(_)
        | Value::Map(_) => None,
    }
}

/// One RPC and how the service treats it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Method {
    /// The HTTP/2 path of the RPC: `/supportdesk.v1.TicketService/CreateTicket`.
    pub path: String,
    /// Its position in the table (0 to the number of RPCs), for per-RPC state kept in arrays.
    pub index: usize,
    /// The full name of its service: `supportdesk.v1.TicketService`.
    pub service: String,
    /// The RPC's own name: `CreateTicket`.
    pub name: String,
    pub access: Access,
    pub quota: Quota,
    pub idempotency: Idempotency,
    pub retry: Retry,
    pub http_success: HttpSuccess,
    /// The least role an authenticated caller needs; `None` for public RPCs.
    pub role: Option<Role>,
    /// What admission reads ahead; `None` for nothing.
    pub prefetch: Option<Prefetch>,
    /// The RPC's own deadline (`deadline_ms`), below the server's; `None`: the server's.
    pub deadline: Option<std::time::Duration>,
    /// Its REST paths that name request fields; `None` when none does (and for health and
    /// reflection, which have no REST mapping).
    pub path_bindings: Option<PathBindings>,
    /// Every REST binding of its `google.api.http` rule, variables or not (empty for health and
    /// reflection): what the body of a transcoded request fills, to name fields in REST terms.
    pub rest_bindings: Vec<PathBinding>,
}

impl Method {
    /// The `body` of the binding a transcoded request was matched by (its HTTP method and the
    /// path it called, query included): `*`, a field name, or empty; `None` for an RPC without
    /// REST bindings, and for a raw (`HttpBody`) body, which has no JSON to name fields by.
    pub fn rest_body(&self, http_method: Option<&str>, original_path: &str) -> Option<&str> {
        let path = original_path.split(['?', '#']).next().unwrap_or_default();
        self.rest_bindings
            .iter()
            .find(|binding| {
                http_method.is_none_or(|method| method.eq_ignore_ascii_case(&binding.http_method))
                    && binding.template.captures(path).is_some()
            })
            .or_else(|| self.rest_bindings.first())
            .filter(|binding| !binding.raw_body)
            .map(|binding| binding.body.as_str())
    }
}

/// Every RPC the server answers, by path.
#[derive(Debug)]
pub struct MethodTable {
    by_path: BTreeMap<String, Method>,
    /// The full names of the API's services: ours, and the vendored ones declared in our proto.
    api_services: BTreeSet<String>,
}

/// Why the table cannot be built: a declaration is missing or no code can honour it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodTableError(String);

impl fmt::Display for MethodTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MethodTableError {}

static TABLE: LazyLock<Result<MethodTable, MethodTableError>> = LazyLock::new(|| {
    MethodTable::from_descriptor_sets(
        proto::FILE_DESCRIPTOR_SET,
        &[
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ],
    )
});

impl MethodTable {
    /// The table of this build's API, read once; the error names every RPC that is wrong.
    pub fn get() -> Result<&'static Self, MethodTableError> {
        TABLE.as_ref().map_err(Clone::clone)
    }

    /// Builds the table from the API's descriptor set and the infrastructure services' sets.
    pub fn from_descriptor_sets(
        api: &[u8],
        infrastructure: &[&[u8]],
    ) -> Result<Self, MethodTableError> {
        let pool = decode(api)?;
        let option = pool.get_extension_by_name(METHOD_OPTION).ok_or_else(|| {
            MethodTableError(format!(
                "the descriptor set does not define {METHOD_OPTION}"
            ))
        })?;
        let http = pool.get_extension_by_name(HTTP_OPTION);
        let mut by_path = BTreeMap::new();
        let mut problems = Vec::new();
        let mut api_services = BTreeSet::new();
        let foreign = foreign_declarations(&pool, &mut problems);
        let mut declared_services: Vec<prost_reflect::ServiceDescriptor> = pool
            .services()
            .filter(|s| is_api_service(s.full_name()))
            .collect();
        for method in foreign.keys() {
            if let Some(service) = pool
                .services()
                .find(|service| service.methods().any(|m| m.full_name() == method))
                && !declared_services.contains(&service)
            {
                declared_services.push(service);
            }
        }
        for service in declared_services {
            api_services.insert(service.full_name().to_owned());
            for method in service.methods() {
                let policy = if is_api_service(service.full_name()) {
                    inline_policy(&method, &option)
                } else {
                    foreign.get(method.full_name()).cloned().ok_or_else(|| {
                        "no (supportdesk.v1.foreign_method) declaration: every RPC of a served \
                         service is declared"
                            .to_owned()
                    })
                };
                let declared = policy
                    .and_then(|policy| declared(&method, &policy))
                    .and_then(|mut declared| {
                        if let Some(http) = &http {
                            let (with_variables, all) = path_bindings(&method, http)?;
                            declared.path_bindings = with_variables;
                            declared.rest_bindings = all;
                        }
                        Ok(declared)
                    });
                match declared {
                    Ok(declared) => {
                        by_path.insert(declared.path.clone(), declared);
                    }
                    Err(problem) => problems.push(format!("{}: {problem}", method.full_name())),
                }
            }
        }
        if !problems.is_empty() {
            return Err(MethodTableError(format!(
                "RPCs without a valid (supportdesk.v1.method) declaration: {}",
                problems.join("; ")
            )));
        }
        for set in infrastructure {
            for service in decode(set)?.services() {
                for method in service.methods() {
                    let infrastructure = Method {
                        path: path_of(&method),
                        index: 0,
                        service: service.full_name().to_owned(),
                        name: method.name().to_owned(),
                        access: Access::Public,
                        quota: Quota::Exempt,
                        idempotency: Idempotency::Ignored,
                        // Health and reflection read: a repeat answers what the first would.
                        retry: Retry::Safe,
                        http_success: HttpSuccess::Ok,
                        role: None,
                        prefetch: None,
                        deadline: None,
                        path_bindings: None,
                        rest_bindings: Vec::new(),
                    };
                    by_path.insert(infrastructure.path.clone(), infrastructure);
                }
            }
        }
        for (index, method) in by_path.values_mut().enumerate() {
            method.index = index;
        }
        Ok(Self {
            by_path,
            api_services,
        })
    }

    /// The RPC at `path`, if the server has one there.
    pub fn lookup(&self, path: &str) -> Option<&Method> {
        self.by_path.get(path)
    }

    /// Every RPC, API and infrastructure, by path.
    pub fn methods(&self) -> impl Iterator<Item = &Method> {
        self.by_path.values()
    }

    /// The RPCs of the API: package `supportdesk.v1`, and the vendored services it declares.
    pub fn api_methods(&self) -> impl Iterator<Item = &Method> {
        self.methods()
            .filter(|method| self.api_services.contains(&method.service))
    }

    /// The full names of the API's services, sorted, each once.
    pub fn api_services(&self) -> Vec<&str> {
        let mut services: Vec<&str> = self
            .api_methods()
            .map(|method| method.service.as_str())
            .collect();
        services.dedup();
        services
    }
}

fn is_api_service(full_name: &str) -> bool {
    full_name
        .strip_prefix(API_PACKAGE)
        .is_some_and(|rest| rest.starts_with('.') && !rest[1..].contains('.'))
}

fn decode(set: &[u8]) -> Result<DescriptorPool, MethodTableError> {
    DescriptorPool::decode(set)
        .map_err(|error| MethodTableError(format!("a descriptor set does not decode: {error}")))
}

fn path_of(method: &MethodDescriptor) -> String {
    format!("/{}/{}", method.parent_service().full_name(), method.name())
}

/// The `(supportdesk.v1.method)` option of one of our RPCs.
fn inline_policy(
    method: &MethodDescriptor,
    option: &prost_reflect::ExtensionDescriptor,
) -> Result<DynamicMessage, String> {
    let options = method.options();
    if !options.has_extension(option) {
        return Err("no (supportdesk.v1.method) option".to_owned());
    }
    let Value::Message(policy) = options.get_extension(option).into_owned() else {
        return Err("(supportdesk.v1.method) is not a message".to_owned());
    };
    Ok(policy)
}

/// Every `(supportdesk.v1.foreign_method)` declaration of the pool's files, by the RPC's full
/// name; a declaration naming no RPC, or an RPC twice, is a problem.
fn foreign_declarations(
    pool: &DescriptorPool,
    problems: &mut Vec<String>,
) -> BTreeMap<String, DynamicMessage> {
    let mut declarations = BTreeMap::new();
    let Some(option) = pool.get_extension_by_name(FOREIGN_METHOD_OPTION) else {
        return declarations;
    };
    for file in pool.files() {
        let options = file.options();
        if !options.has_extension(&option) {
            continue;
        }
        let Value::List(entries) = options.get_extension(&option).into_owned() else {
            continue;
        };
        for entry in entries {
            let Some(entry) = entry.as_message() else {
                continue;
            };
            let name = entry
                .get_field_by_name("method")
                .and_then(|value| value.as_str().map(str::to_owned))
                .unwrap_or_default();
            let known = pool
                .services()
                .any(|service| service.methods().any(|method| method.full_name() == name));
            let policy = entry
                .get_field_by_name("policy")
                .and_then(|value| value.as_message().cloned());
            match policy {
                Some(policy) if known && !declarations.contains_key(&name) => {
                    declarations.insert(name, policy);
                }
                Some(_) | None => problems.push(format!(
                    "{}: the (supportdesk.v1.foreign_method) declaration of `{name}` names no \
                     RPC of the descriptor set, names one twice, or has no policy",
                    file.name()
                )),
            }
        }
    }
    declarations
}

/// The declaration `policy` of `method`, checked for what the code can honour.
fn declared(method: &MethodDescriptor, policy: &DynamicMessage) -> Result<Method, String> {
    let field = |name: &str| -> i32 {
        match policy.get_field_by_name(name).as_deref() {
            Some(Value::EnumNumber(number)) => *number,
            _ => 0,
        }
    };
    let access = match field("access") {
        1 => Access::Public,
        2 => Access::Authenticated,
        other => return Err(format!("access is {}", unknown(other))),
    };
    let quota = match field("quota") {
        1 => Quota::Read,
        2 => Quota::Write,
        3 => Quota::Public,
        4 => Quota::Login,
        5 => Quota::Webhook,
        other => return Err(format!("quota is {}", unknown(other))),
    };
    let idempotency = match field("idempotency") {
        1 => Idempotency::Ignored,
        2 => Idempotency::Optional,
        3 => Idempotency::Required,
        other => return Err(format!("idempotency is {}", unknown(other))),
    };
    let retry = match (field("retry"), idempotency) {
        (1, Idempotency::Ignored) => Retry::Safe,
        (2, Idempotency::Optional | Idempotency::Required) => Retry::WithKey,
        (3, _) => Retry::Never,
        (1, _) => {
            return Err(
                "retry SAFE is for RPCs that ignore idempotency keys: one that honours a key is \
                 safe to repeat with it (RETRY_WITH_KEY)"
                    .to_owned(),
            );
        }
        (2, _) => {
            return Err(
                "retry WITH_KEY needs an RPC that honours idempotency keys (OPTIONAL or REQUIRED)"
                    .to_owned(),
            );
        }
        (other, _) => return Err(format!("retry is {}", unknown(other))),
    };
    let http_success = match field("http_success") {
        1 => HttpSuccess::Ok,
        2 => HttpSuccess::Created,
        3 => HttpSuccess::NoContent,
        4 => HttpSuccess::Accepted,
        other => return Err(format!("http_success is {}", unknown(other))),
    };
    let role = match field("role") {
        0 => None,
        1 => Some(Role::Customer),
        2 => Some(Role::Agent),
        3 => Some(Role::Admin),
        other => return Err(format!("role is {}", unknown(other))),
    };
    match (access, role) {
        (Access::Public, None) | (Access::Authenticated, Some(_)) => {}
        (Access::Public, Some(_)) => {
            return Err("a public RPC has no caller: it cannot require a role".to_owned());
        }
        (Access::Authenticated, None) => {
            return Err("role is unspecified: name the least role a caller needs".to_owned());
        }
    }
    match (access, quota) {
        (Access::Public, Quota::Public | Quota::Login | Quota::Webhook)
        | (Access::Authenticated, Quota::Read | Quota::Write) => {}
        (Access::Public, Quota::Read | Quota::Write | Quota::Exempt) => {
            return Err(
                "a public RPC has no caller: its quota must be PUBLIC, LOGIN or WEBHOOK".to_owned(),
            );
        }
        (Access::Authenticated, Quota::Public | Quota::Login | Quota::Webhook | Quota::Exempt) => {
            return Err(
                "an authenticated RPC counts against its caller: its quota must be READ or WRITE"
                    .to_owned(),
            );
        }
    }
    let prefetch = match field("prefetch") {
        0 => None,
        1 => {
            let id_field = method
                .input()
                .get_field_by_name("id")
                .filter(|id| id.kind() == Kind::String && !id.is_list());
            let (Access::Authenticated, Some(id_field)) = (access, id_field) else {
                return Err(
                    "prefetch TICKET needs an authenticated RPC whose request has a string `id`"
                        .to_owned(),
                );
            };
            Some(Prefetch::Ticket {
                id_field: id_field.number(),
            })
        }
        other => return Err(format!("prefetch is {}", unknown(other))),
    };
    let deadline = match policy.get_field_by_name("deadline_ms").as_deref() {
        Some(Value::U32(0)) | None => None,
        Some(Value::U32(millis)) => Some(std::time::Duration::from_millis(u64::from(*millis))),
        Some(_) => return Err("deadline_ms is not a uint32".to_owned()),
    };
    Ok(Method {
        path: path_of(method),
        index: 0,
        service: method.parent_service().full_name().to_owned(),
        name: method.name().to_owned(),
        access,
        quota,
        idempotency,
        retry,
        http_success,
        role,
        prefetch,
        deadline,
        path_bindings: None,
        rest_bindings: Vec::new(),
    })
}

/// The `google.api.http` bindings of `method` whose templates have variables, each variable
/// checked to name a singular scalar field of the request (through singular message fields),
/// and every binding.
fn path_bindings(
    method: &MethodDescriptor,
    http: &prost_reflect::ExtensionDescriptor,
) -> Result<(Option<PathBindings>, Vec<PathBinding>), String> {
    let options = method.options();
    if !options.has_extension(http) {
        return Ok((None, Vec::new()));
    }
    let Value::Message(rule) = options.get_extension(http).into_owned() else {
        return Err("(google.api.http) is not a message".to_owned());
    };
    let request = method.input();
    let mut bindings = Vec::new();
    let mut all = Vec::new();
    let mut rules = vec![rule];
    while let Some(rule) = rules.pop() {
        let text = |message: &DynamicMessage, name: &str| -> Option<String> {
            message
                .get_field_by_name(name)?
                .as_str()
                .filter(|text| !text.is_empty())
                .map(str::to_owned)
        };
        let pattern = ["get", "put", "post", "delete", "patch"]
            .into_iter()
            .find_map(|verb| text(&rule, verb).map(|path| (verb.to_ascii_uppercase(), path)))
            .or_else(|| {
                let custom = rule.get_field_by_name("custom")?;
                let custom = custom.as_message()?;
                Some((text(custom, "kind")?, text(custom, "path")?))
            });
        if let Some((http_method, path)) = pattern {
            let template = PathTemplate::parse(&path).map_err(|error| error.to_string())?;
            for variable in template.variables() {
                check_scalar_path(&request, variable)
                    .map_err(|why| format!("path variable {{{variable}}} of `{path}` {why}"))?;
            }
            let body = text(&rule, "body").unwrap_or_default();
            let raw_body = match body.as_str() {
                "" => false,
                "*" => request.full_name() == HTTP_BODY,
                field => request
                    .get_field_by_name(field)
                    .and_then(|field| field.kind().as_message().cloned())
                    .is_some_and(|message| message.full_name() == HTTP_BODY),
            };
            let binding = PathBinding {
                http_method,
                template,
                body,
                raw_body,
            };
            if !binding.template.variables().is_empty() {
                bindings.push(binding.clone());
            }
            all.push(binding);
        }
        if let Some(more) = rule.get_field_by_name("additional_bindings")
            && let Value::List(more) = more.as_ref()
        {
            rules.extend(more.iter().filter_map(|value| value.as_message().cloned()));
        }
    }
    Ok((
        (!bindings.is_empty()).then_some(PathBindings { request, bindings }),
        all,
    ))
}

/// The message of a raw request or response body.
const HTTP_BODY: &str = "google.api.HttpBody";

/// Whether `path` (`ticket.id`) leads from `message` through singular message fields to a
/// singular string, integer or bool field.
fn check_scalar_path(message: &MessageDescriptor, path: &str) -> Result<(), String> {
    let mut current = message.clone();
    let names: Vec<&str> = path.split('.').collect();
    for (index, name) in names.iter().enumerate() {
        let field = current
            .get_field_by_name(name)
            .ok_or_else(|| format!("names no field of {}", current.full_name()))?;
        if field.is_list() || field.is_map() {
            return Err("names a repeated field".to_owned());
        }
        let last = index + 1 == names.len();
        let kind = field.kind();
        if !last {
            match kind.as_message() {
                Some(child) => current = child.clone(),
                None => return Err(format!("crosses {name}, which is not a message")),
            }
        } else if !matches!(
            kind,
            Kind::String
                | Kind::Int32
                | Kind::Int64
                | Kind::Uint32
                | Kind::Uint64
                | Kind::Sint32
                | Kind::Sint64
                | Kind::Fixed32
                | Kind::Fixed64
                | Kind::Sfixed32
                | Kind::Sfixed64
                | Kind::Bool
        ) {
            return Err("does not name a string, integer or bool field".to_owned());
        }
    }
    Ok(())
}

fn unknown(number: i32) -> String {
    if number == 0 {
        "unspecified".to_owned()
    } else {
        format!("{number}, which this build does not know")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> &'static MethodTable {
        MethodTable::get().expect("every RPC of the API declares a valid policy")
    }

    #[test]
    fn every_rpc_of_the_api_has_a_declaration() {
        let services = table().api_services();
        assert_eq!(
            services,
            [
                "google.longrunning.Operations",
                "supportdesk.v1.AccountService",
                "supportdesk.v1.ApiKeyService",
                "supportdesk.v1.AttachmentService",
                "supportdesk.v1.AuthService",
                "supportdesk.v1.BillingService",
                "supportdesk.v1.CustomFieldService",
                "supportdesk.v1.DashboardService",
                "supportdesk.v1.EventService",
                "supportdesk.v1.GroupService",
                "supportdesk.v1.NotificationService",
                "supportdesk.v1.ScheduleService",
                "supportdesk.v1.SlaPolicyService",
                "supportdesk.v1.TicketService",
                "supportdesk.v1.UserService",
                "supportdesk.v1.ViewService",
                "supportdesk.v1.WebhookEndpointService",
                "supportdesk.v1.WebhookService",
            ]
        );
        assert!(table().api_methods().count() >= 30);
    }

    #[test]
    fn a_declared_deadline_is_read_and_an_undeclared_one_is_the_servers() {
        let revenue = table()
            .lookup("/supportdesk.v1.DashboardService/GetRevenue")
            .expect("GetRevenue");
        assert_eq!(
            revenue.deadline,
            Some(std::time::Duration::from_millis(2_000))
        );
        let create = table()
            .lookup("/supportdesk.v1.TicketService/CreateTicket")
            .expect("CreateTicket");
        assert_eq!(create.deadline, None);
    }

    #[test]
    fn health_and_reflection_are_public_and_counted_against_no_quota() {
        for path in [
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            let method = table().lookup(path).expect(path);
            assert_eq!(
                (method.access, method.quota),
                (Access::Public, Quota::Exempt)
            );
        }
    }

    #[test]
    fn declarations_are_read_as_written_in_the_proto() {
        let create = table()
            .lookup("/supportdesk.v1.ApiKeyService/CreateApiKey")
            .expect("CreateApiKey");
        assert_eq!(
            (
                create.access,
                create.quota,
                create.idempotency,
                create.http_success
            ),
            (
                Access::Authenticated,
                Quota::Write,
                Idempotency::Required,
                HttpSuccess::Created
            )
        );
        assert_eq!(create.role, Some(Role::Admin));
        let login = table()
            .lookup("/supportdesk.v1.AuthService/Login")
            .expect("Login");
        assert_eq!(
            (login.access, login.quota, login.role),
            (Access::Public, Quota::Login, None)
        );
        assert!(
            table()
                .lookup("/supportdesk.v1.AuthService/LoginAll")
                .is_none()
        );
    }

    #[test]
    fn rest_path_variables_are_read_from_google_api_http() {
        let update = table()
            .lookup("/supportdesk.v1.TicketService/UpdateTicket")
            .expect("UpdateTicket");
        let bindings = update.path_bindings.as_ref().expect("a path variable");
        let binding = &bindings.bindings[0];
        assert_eq!(
            (
                binding.http_method.as_str(),
                binding.template.as_str(),
                binding.body.as_str()
            ),
            ("PATCH", "/v1/tickets/{ticket.id}", "ticket")
        );
        assert_eq!(binding.template.variables(), ["ticket.id"]);
        assert!(
            bindings
                .binding_for(Some("PATCH"), "/v1/tickets/X")
                .is_some()
        );
        assert!(bindings.binding_for(Some("GET"), "/v1/tickets/X").is_none());
    }

    #[test]
    fn a_path_variable_naming_no_field_of_the_request_stops_the_table_from_loading() {
        // Same length, so every length prefix around it still holds.
        let (from, to): (&[u8], &[u8]) = (b"/v1/tickets/{ticket.id}", b"/v1/tickets/{ticket.no}");
        let mut set = proto::FILE_DESCRIPTOR_SET.to_vec();
        let mut replaced = 0;
        while let Some(at) = set.windows(from.len()).position(|window| window == from) {
            set[at..at + to.len()].copy_from_slice(to);
            replaced += 1;
        }
        assert!(replaced >= 1, "the template is in the descriptor set");
        let error =
            MethodTable::from_descriptor_sets(&set, &[]).expect_err("a variable naming no field");
        assert!(
            error.to_string().contains(
                "supportdesk.v1.TicketService.UpdateTicket: path variable {ticket.no} of \
                 `/v1/tickets/{ticket.no}` names no field of supportdesk.v1.Ticket"
            ),
            "{error}"
        );
    }

    #[test]
    fn the_vendored_operations_service_is_declared_in_our_own_proto() {
        let get = table()
            .lookup("/google.longrunning.Operations/GetOperation")
            .expect("GetOperation");
        assert_eq!(
            (get.access, get.quota, get.role),
            (Access::Authenticated, Quota::Read, Some(Role::Agent))
        );
        let cancel = table()
            .lookup("/google.longrunning.Operations/CancelOperation")
            .expect("CancelOperation");
        assert_eq!(cancel.role, Some(Role::Admin));
        let bindings = get.path_bindings.as_ref().expect("a path variable");
        assert!(
            bindings
                .binding_for(Some("GET"), "/v1/operations/0190")
                .is_some()
        );
        let import = table()
            .lookup("/supportdesk.v1.TicketService/ImportTickets")
            .expect("ImportTickets");
        assert_eq!(import.http_success, HttpSuccess::Accepted);
    }

    #[test]
    fn a_foreign_declaration_naming_no_rpc_stops_the_table_from_loading() {
        // Same length, so every length prefix around it still holds.
        let (from, to): (&[u8], &[u8]) = (
            b"google.longrunning.Operations.WaitOperation",
            b"google.longrunning.Operations.WaitOperatioX",
        );
        let mut set = proto::FILE_DESCRIPTOR_SET.to_vec();
        // Every occurrence: the name may also appear before the declaration (in a comment).
        let places: Vec<usize> = set
            .windows(from.len())
            .enumerate()
            .filter(|(_, window)| *window == from)
            .map(|(at, _)| at)
            .collect();
        assert!(
            !places.is_empty(),
            "the declaration is in the descriptor set"
        );
        for at in places {
            set[at..at + to.len()].copy_from_slice(to);
        }
        let error =
            MethodTable::from_descriptor_sets(&set, &[]).expect_err("a declaration naming no RPC");
        let error = error.to_string();
        assert!(error.contains("WaitOperatioX"), "{error}");
        assert!(
            error.contains(
                "google.longrunning.Operations.WaitOperation: no (supportdesk.v1.foreign_method)"
            ),
            "{error}"
        );
    }

    #[test]
    fn a_retry_declaration_must_agree_with_how_the_rpc_treats_idempotency_keys() {
        let pool = DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET).expect("the descriptor set");
        let method = pool
            .get_service_by_name("supportdesk.v1.TicketService")
            .and_then(|service| service.methods().find(|m| m.name() == "CreateTicket"))
            .expect("CreateTicket");
        let policy_type = pool
            .get_message_by_name("supportdesk.v1.MethodPolicy")
            .expect("MethodPolicy");
        let policy = |idempotency: i32, retry: i32| {
            let mut policy = DynamicMessage::new(policy_type.clone());
            for (name, number) in [
                ("access", 2),
                ("quota", 2),
                ("role", 2),
                ("http_success", 2),
                ("idempotency", idempotency),
                ("retry", retry),
            ] {
                policy.set_field_by_name(name, Value::EnumNumber(number));
            }
            policy
        };
        let retry = |idempotency, retry| declared(&method, &policy(idempotency, retry));
        assert_eq!(retry(2, 2).map(|m| m.retry), Ok(Retry::WithKey));
        assert_eq!(retry(1, 1).map(|m| m.retry), Ok(Retry::Safe));
        assert_eq!(retry(3, 3).map(|m| m.retry), Ok(Retry::Never));
        assert!(retry(2, 1).unwrap_err().contains("retry SAFE"));
        assert!(retry(1, 2).unwrap_err().contains("retry WITH_KEY"));
        assert_eq!(retry(2, 0).unwrap_err(), "retry is unspecified");
        assert_eq!(
            table()
                .lookup("/supportdesk.v1.AuthService/RefreshToken")
                .map(|m| m.retry),
            Some(Retry::Never)
        );
    }

    #[test]
    fn only_the_api_package_counts_as_api_services() {
        assert!(is_api_service("supportdesk.v1.TicketService"));
        assert!(!is_api_service("supportdesk.v1alpha.TicketService"));
        assert!(!is_api_service("supportdesk.v1.nested.TicketService"));
        assert!(!is_api_service("grpc.health.v1.Health"));
    }
}
