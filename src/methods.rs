//! The method table: how the service treats each RPC, read once at start-up from the
//! `(supportdesk.v1.method)` option that every RPC declares beside itself in the proto
//! (`proto/supportdesk/v1/method_policy.proto`). The auth layer, the rate limiter, the
//! idempotency-key layer, the REST success status and health registration all read this table,
//! so a fact about an RPC is written once, next to the RPC.
//!
//! Health and reflection are not ours to annotate: their methods are read from the descriptor
//! sets tonic ships and declared here as infrastructure (public, counted against no quota).
//!
//! Loading fails, and so the service refuses to start, when an RPC of ours has no declaration,
//! leaves a field of it unspecified, or combines fields no code honours (a public RPC on a
//! caller's quota, an authenticated one on an anonymous quota).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, Kind, MessageDescriptor, MethodDescriptor, Value};

use crate::domain::Role;
use crate::proto;

/// The package whose services are the API.
pub const API_PACKAGE: &str = "supportdesk.v1";

/// The full name of the method option every API RPC declares.
const METHOD_OPTION: &str = "supportdesk.v1.method";

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

/// The HTTP status a success answers with through Envoy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpSuccess {
    Ok,
    Created,
    NoContent,
}

impl HttpSuccess {
    /// The status code, as Envoy's response filter reads it from `x-http-status`; `None` for
    /// 200, which needs no header.
    pub fn status_code(self) -> Option<&'static str> {
        match self {
            Self::Ok => None,
            Self::Created => Some("201"),
            Self::NoContent => Some("204"),
        }
    }
}

/// What admission reads ahead for an RPC, in its own round trip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prefetch {
    /// The ticket cache's entry for the ticket named by the request's string field `id`
    /// (checked at start-up to exist in the request message).
    Ticket { request: MessageDescriptor },
}

/// One RPC and how the service treats it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Method {
    /// The HTTP/2 path of the RPC: `/supportdesk.v1.TicketService/CreateTicket`.
    pub path: String,
    /// The full name of its service: `supportdesk.v1.TicketService`.
    pub service: String,
    /// The RPC's own name: `CreateTicket`.
    pub name: String,
    pub access: Access,
    pub quota: Quota,
    pub idempotency: Idempotency,
    pub http_success: HttpSuccess,
    /// The least role an authenticated caller needs; `None` for public RPCs.
    pub role: Option<Role>,
    /// What admission reads ahead; `None` for nothing.
    pub prefetch: Option<Prefetch>,
}

/// Every RPC the server answers, by path.
#[derive(Debug)]
pub struct MethodTable {
    by_path: BTreeMap<String, Method>,
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
        let mut by_path = BTreeMap::new();
        let mut problems = Vec::new();
        for service in pool.services().filter(|s| s.package_name() == API_PACKAGE) {
            for method in service.methods() {
                match declared(&method, &option) {
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
                        service: service.full_name().to_owned(),
                        name: method.name().to_owned(),
                        access: Access::Public,
                        quota: Quota::Exempt,
                        idempotency: Idempotency::Ignored,
                        http_success: HttpSuccess::Ok,
                        role: None,
                        prefetch: None,
                    };
                    by_path.insert(infrastructure.path.clone(), infrastructure);
                }
            }
        }
        Ok(Self { by_path })
    }

    /// The RPC at `path`, if the server has one there.
    pub fn lookup(&self, path: &str) -> Option<&Method> {
        self.by_path.get(path)
    }

    /// Every RPC, API and infrastructure, by path.
    pub fn methods(&self) -> impl Iterator<Item = &Method> {
        self.by_path.values()
    }

    /// The RPCs of the API (package `supportdesk.v1`).
    pub fn api_methods(&self) -> impl Iterator<Item = &Method> {
        self.methods()
            .filter(|method| is_api_service(&method.service))
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

/// The declaration of `method`, checked for what the code can honour.
fn declared(
    method: &MethodDescriptor,
    option: &prost_reflect::ExtensionDescriptor,
) -> Result<Method, String> {
    let options = method.options();
    if !options.has_extension(option) {
        return Err("no (supportdesk.v1.method) option".to_owned());
    }
    let Value::Message(policy) = options.get_extension(option).into_owned() else {
        return Err("(supportdesk.v1.method) is not a message".to_owned());
    };
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
        other => return Err(format!("quota is {}", unknown(other))),
    };
    let idempotency = match field("idempotency") {
        1 => Idempotency::Ignored,
        2 => Idempotency::Optional,
        3 => Idempotency::Required,
        other => return Err(format!("idempotency is {}", unknown(other))),
    };
    let http_success = match field("http_success") {
        1 => HttpSuccess::Ok,
        2 => HttpSuccess::Created,
        3 => HttpSuccess::NoContent,
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
        (Access::Public, Quota::Public | Quota::Login)
        | (Access::Authenticated, Quota::Read | Quota::Write) => {}
        (Access::Public, Quota::Read | Quota::Write | Quota::Exempt) => {
            return Err("a public RPC has no caller: its quota must be PUBLIC or LOGIN".to_owned());
        }
        (Access::Authenticated, Quota::Public | Quota::Login | Quota::Exempt) => {
            return Err(
                "an authenticated RPC counts against its caller: its quota must be READ or WRITE"
                    .to_owned(),
            );
        }
    }
    let prefetch = match field("prefetch") {
        0 => None,
        1 => {
            let request = method.input();
            let names_a_ticket = request
                .get_field_by_name("id")
                .is_some_and(|id| id.kind() == Kind::String && !id.is_list());
            if access != Access::Authenticated || !names_a_ticket {
                return Err(
                    "prefetch TICKET needs an authenticated RPC whose request has a string `id`"
                        .to_owned(),
                );
            }
            Some(Prefetch::Ticket { request })
        }
        other => return Err(format!("prefetch is {}", unknown(other))),
    };
    Ok(Method {
        path: path_of(method),
        service: method.parent_service().full_name().to_owned(),
        name: method.name().to_owned(),
        access,
        quota,
        idempotency,
        http_success,
        role,
        prefetch,
    })
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
                "supportdesk.v1.AccountService",
                "supportdesk.v1.ApiKeyService",
                "supportdesk.v1.AuthService",
                "supportdesk.v1.TicketService",
                "supportdesk.v1.UserService",
            ]
        );
        assert!(table().api_methods().count() >= 26);
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
    fn only_the_api_package_counts_as_api_services() {
        assert!(is_api_service("supportdesk.v1.TicketService"));
        assert!(!is_api_service("supportdesk.v1alpha.TicketService"));
        assert!(!is_api_service("supportdesk.v1.nested.TicketService"));
        assert!(!is_api_service("grpc.health.v1.Health"));
    }
}
