//! The Kubernetes manifests (`deploy/kubernetes/`): `kubectl kustomize` renders the base and the
//! example overlay, `kubernetes-validate --strict` accepts every object against the 1.37 schemas,
//! and a policy holds them to what a platform team requires and to the service's own settings:
//! the ports, health names and grace period the manifests carry are read back from the
//! ConfigMap they ship, through the service's own settings reader, and from the constants of
//! the code, so changing a setting or a default cannot silently break them. Envoy's Kubernetes
//! configuration is what its init container renders (`supportdesk envoy-config --shape
//! kubernetes` with the environment the manifests give it), and a real Envoy serves with it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Deserialize as _;
use serde_json::{Value, json};
use supportdesk::configuration::{FILE_SUFFIX, SECRET_SETTINGS, Settings};

use crate::support::{
    PATIENCE, TEST_EMAIL_WEBHOOK_SECRET, TestApp, envoy, free_port, repository_root, tool,
    wait_until,
};

const BASE: &str = "deploy/kubernetes/base";
const OVERLAY: &str = "deploy/kubernetes/overlays/example";
/// The Kubernetes release whose schemas the objects must satisfy.
const KUBERNETES_VERSION: &str = "1.37.0";
/// Where the Secret's files are mounted, by the manifests' own convention (settings.env's paths).
const SECRET_VOLUME: &str = "supportdesk-secrets";
/// PostgreSQL's default `max_connections` (the budget docs/deployment.md states), less its
/// `superuser_reserved_connections` (3).
const POSTGRES_CONNECTIONS: u64 = 100 - 3;

/// Every object `kubectl kustomize <dir>` renders, as JSON values.
fn rendered(dir: &str) -> Vec<Value> {
    let output = Command::new(tool("KUBECTL_BIN"))
        .args(["kustomize", dir])
        .current_dir(repository_root())
        .output()
        .expect("run kubectl kustomize");
    assert!(
        output.status.success(),
        "kubectl kustomize {dir}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8 YAML");
    serde_norway::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).expect("a YAML document"))
        .filter(|value| !value.is_null())
        .collect()
}

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// The one object of `kind` whose name is `wanted` (a generated ConfigMap's: `wanted` and the
/// hash of its content).
fn object<'a>(objects: &'a [Value], wanted_kind: &str, wanted: &str) -> &'a Value {
    let named = |object: &Value| {
        let name = name(object);
        name == wanted
            || (wanted_kind == "ConfigMap"
                && name
                    .strip_prefix(wanted)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|hash| !hash.contains('-')))
    };
    let found: Vec<&Value> = objects
        .iter()
        .filter(|object| kind(object) == wanted_kind && named(object))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {wanted_kind} {wanted}, found {}",
        found.len()
    );
    found[0]
}

/// The pod template's spec of a Deployment or a Job.
fn pod_spec(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]
}

fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    pod["containers"].as_array().into_iter().flatten()
}

fn all_containers(pod: &Value) -> impl Iterator<Item = &Value> {
    pod["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(containers(pod))
}

fn container<'a>(pod: &'a Value, wanted: &str) -> &'a Value {
    containers(pod)
        .find(|container| container["name"] == wanted)
        .unwrap_or_else(|| panic!("no container {wanted}"))
}

/// The number of the container port named `port_name`.
fn port_number(container: &Value, port_name: &str) -> u64 {
    container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|port| port["name"] == port_name)
        .and_then(|port| port["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("{} declares no port {port_name}", container["name"]))
}

/// The settings the supportdesk pods run with: the ConfigMap's data read by the service's own
/// reader, each secret the ConfigMap names a file of given a placeholder (the files exist only
/// in a cluster). Also returns the ConfigMap's data.
fn settings_of(objects: &[Value]) -> (Settings, BTreeMap<String, String>) {
    let config_map = object(objects, "ConfigMap", "supportdesk-settings");
    let data: BTreeMap<String, String> =
        serde_json::from_value(config_map["data"].clone()).expect("string data");
    let placeholder = |secret: &str| -> String {
        match secret {
            "DATABASE_URL" | "DATABASE_READ_REPLICA_URL" => {
                "postgres://supportdesk:placeholder@db/supportdesk".to_owned()
            }
            "REDIS_URL" => "redis://cache:6379".to_owned(),
            "PAYMENT_WEBHOOK_SECRET" => "whsec_placeholder_0123456789abcdef0123456789".to_owned(),
            "EMAIL_WEBHOOK_SECRET" => TEST_EMAIL_WEBHOOK_SECRET.to_owned(),
            _ => "placeholder-0123456789abcdef0123456789abcdef".to_owned(),
        }
    };
    let mut values: HashMap<String, String> = HashMap::new();
    for (key, value) in &data {
        match key
            .strip_suffix(FILE_SUFFIX)
            .filter(|secret| SECRET_SETTINGS.contains(secret))
        {
            Some(secret) => {
                values.insert(secret.to_owned(), placeholder(secret));
            }
            None => {
                values.insert(key.clone(), value.clone());
            }
        }
    }
    let settings = Settings::from_lookup(|key| values.get(key).cloned())
        .unwrap_or_else(|error| panic!("the ConfigMap's settings are invalid: {error}"));
    (settings, data)
}

/// Validates every object of `objects` with kubernetes-validate, strictly (unknown fields are
/// errors), against the schemas of [`KUBERNETES_VERSION`].
fn validate(dir: &str, objects: &[Value]) {
    let file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("a temporary file");
    let documents: Vec<String> = objects
        .iter()
        .map(|object| serde_norway::to_string(object).expect("YAML"))
        .collect();
    std::fs::write(file.path(), documents.join("---\n")).expect("write the objects");
    let output = Command::new(tool("KUBERNETES_VALIDATE_BIN"))
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .arg(file.path())
        .output()
        .expect("run kubernetes-validate");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "kubernetes-validate {dir}:\n{report}"
    );
    assert_eq!(
        report.matches(" passed for resource ").count(),
        objects.len(),
        "every object of {dir} was validated:\n{report}"
    );
}

#[test]
fn the_base_and_the_example_overlay_render_and_every_object_is_valid_for_kubernetes_1_37() {
    for dir in [BASE, OVERLAY] {
        let objects = rendered(dir);
        let kinds: Vec<&str> = objects.iter().map(kind).collect();
        for expected in [
            "ServiceAccount",
            "ConfigMap",
            "Deployment",
            "Service",
            "Job",
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler",
            "NetworkPolicy",
        ] {
            assert!(
                kinds.contains(&expected),
                "{dir} renders no {expected}: {kinds:?}"
            );
        }
        validate(dir, &objects);
    }
}

#[test]
fn every_container_has_probes_resources_and_runs_as_the_images_user_on_a_read_only_root() {
    let containerfile =
        std::fs::read_to_string(repository_root().join("deploy/container/Containerfile"))
            .expect("read the Containerfile");
    let image_user: u64 = containerfile
        .lines()
        .find_map(|line| line.strip_prefix("USER "))
        .and_then(|user| user.split(':').next())
        .and_then(|uid| uid.trim().parse().ok())
        .expect("the Containerfile names a numeric USER");
    assert_ne!(image_user, 0, "the image does not run as root");
    for dir in [BASE, OVERLAY] {
        let objects = rendered(dir);
        assert!(
            !objects.iter().any(|object| kind(object) == "Secret"),
            "{dir}: no Secret (and so no secret value) is in the repository"
        );
        let workloads: Vec<&Value> = objects
            .iter()
            .filter(|object| matches!(kind(object), "Deployment" | "Job"))
            .collect();
        assert!(
            workloads.len() >= 3,
            "{dir}: the service, Envoy and the migration"
        );
        for workload in workloads {
            let what = format!("{dir}: {} {}", kind(workload), name(workload));
            let pod = pod_spec(workload);
            assert_eq!(pod["automountServiceAccountToken"], false, "{what}");
            let pod_security = &pod["securityContext"];
            assert_eq!(pod_security["runAsNonRoot"], true, "{what}");
            assert_eq!(
                pod_security["seccompProfile"]["type"], "RuntimeDefault",
                "{what}"
            );
            for container in all_containers(pod) {
                let what = format!("{what}, container {}", container["name"]);
                let security = &container["securityContext"];
                assert_eq!(security["runAsNonRoot"], true, "{what}");
                assert_ne!(security["runAsUser"], 0, "{what}");
                assert_eq!(security["readOnlyRootFilesystem"], true, "{what}");
                assert_eq!(security["allowPrivilegeEscalation"], false, "{what}");
                assert_eq!(
                    security["capabilities"]["drop"],
                    serde_json::json!(["ALL"]),
                    "{what}"
                );
                assert_eq!(
                    security["seccompProfile"]["type"], "RuntimeDefault",
                    "{what}"
                );
                for bound in ["requests", "limits"] {
                    for resource in ["cpu", "memory"] {
                        assert!(
                            container["resources"][bound][resource].is_string(),
                            "{what}: resources.{bound}.{resource}"
                        );
                    }
                }
                let image = container["image"].as_str().unwrap_or_default();
                if image.contains("supportdesk") {
                    assert_eq!(
                        security["runAsUser"].as_u64(),
                        Some(image_user),
                        "{what}: the image's own user"
                    );
                }
            }
            // A Job's and an init container's work ends by itself; what serves is probed.
            if kind(workload) == "Deployment" {
                for container in containers(pod) {
                    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                        assert!(
                            container[probe].is_object(),
                            "{what}, container {}: {probe}",
                            container["name"]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn the_manifests_agree_with_the_services_own_settings_and_defaults() {
    let objects = rendered(OVERLAY);
    let (settings, data) = settings_of(&objects);
    let deployment = object(&objects, "Deployment", "supportdesk");
    let pod = pod_spec(deployment);
    let server = container(pod, "supportdesk");

    // gRPC: where the service listens is where the pod, the probes and the Services point.
    let listen = settings.server.listen_addr;
    assert!(
        listen.ip().is_unspecified(),
        "gRPC listens on the pod's addresses: {listen}"
    );
    let grpc = u64::from(listen.port());
    assert_eq!(port_number(server, "grpc"), grpc);
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(
            server[probe]["grpc"]["port"].as_u64(),
            Some(grpc),
            "{probe}"
        );
    }
    // What each probe asks: liveness the name that stays SERVING through dependency outages
    // (tests/api/deployment/liveness.rs), readiness the whole server.
    let liveness = supportdesk::telemetry::health::LIVENESS_SERVICE;
    assert_eq!(server["startupProbe"]["grpc"]["service"], liveness);
    assert_eq!(server["livenessProbe"]["grpc"]["service"], liveness);
    assert_eq!(server["readinessProbe"]["grpc"]["service"], "");

    // Metrics: served where the pod declares and Prometheus is told to scrape.
    let metrics = settings
        .server
        .metrics_listen_addr
        .expect("METRICS_LISTEN_ADDR is set: metrics are scrapeable");
    assert!(
        metrics.ip().is_unspecified(),
        "metrics on the pod's addresses: {metrics}"
    );
    assert_eq!(port_number(server, "metrics"), u64::from(metrics.port()));
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        annotations["prometheus.io/port"],
        metrics.port().to_string()
    );

    // The headless Service publishes both ports to the pods' ports of the same names.
    let service = object(&objects, "Service", "supportdesk-grpc");
    assert_eq!(service["spec"]["clusterIP"], "None", "headless");
    for (port_name, number) in [("grpc", grpc), ("metrics", u64::from(metrics.port()))] {
        let port = service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|port| port["name"] == port_name)
            .unwrap_or_else(|| panic!("the Service has no port {port_name}"));
        assert_eq!(port["port"].as_u64(), Some(number), "{port_name}");
        assert_eq!(port["targetPort"], port_name);
    }
    // Envoy sends to that Service's name and port, resolved by DNS; it allows the overlay's
    // browser origin; its health checks and long-stream limit follow the pods' settings and the
    // autoscaler.
    let envoy_config: serde_norway::Value =
        serde_norway::from_str(&envoy_init_container_output(&objects, &[]))
            .expect("Envoy's configuration is YAML");
    let envoy_config: Value =
        serde_norway::from_value(envoy_config).expect("Envoy's configuration as JSON");
    let clusters = envoy_config["static_resources"]["clusters"]
        .as_array()
        .expect("clusters");
    let cluster = |wanted: &str| {
        clusters
            .iter()
            .find(|cluster| cluster["name"] == wanted)
            .unwrap_or_else(|| panic!("the cluster {wanted}"))
    };
    for name in ["supportdesk", "supportdesk-streams"] {
        let cluster = cluster(name);
        assert_eq!(cluster["type"], "STRICT_DNS", "{name}");
        assert_eq!(
            cluster["load_assignment"]["endpoints"][0]["lb_endpoints"],
            json!([{ "endpoint": { "address": { "socket_address": {
                "address": "supportdesk-grpc", "port_value": grpc,
            } } } }]),
            "{name}: Envoy's cluster is the headless Service on the gRPC port"
        );
        let interval = settings.server.shutdown_delay.as_millis() / 3;
        assert_eq!(
            cluster["health_checks"][0]["interval"],
            format!("{}.{:03}s", interval / 1000, interval % 1000),
            "{name}: health-checked every third of SHUTDOWN_DELAY_MS"
        );
    }
    let max_replicas =
        object(&objects, "HorizontalPodAutoscaler", "supportdesk")["spec"]["maxReplicas"]
            .as_u64()
            .expect("maxReplicas");
    let per_instance = u64::from(settings.outbound_webhooks.watch_max_per_instance)
        + u64::from(settings.tickets.export_max_per_instance);
    assert_eq!(
        cluster("supportdesk-streams")["circuit_breakers"]["thresholds"][0]["max_requests"],
        max_replicas * per_instance,
        "the long streams' limit counts the autoscaler's maxReplicas"
    );
    let listener = envoy_config["static_resources"]["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .find(|listener| listener["name"] == "rest")
        .expect("the rest listener");
    assert_eq!(
        listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"]
            [0]["typed_per_filter_config"]["envoy.filters.http.cors"]["allow_origin_string_match"],
        json!([{ "exact": "https://desk.example.com" }]),
        "the overlay's Envoy allows the browser origin of its envoy.env"
    );

    // Shutdown: the kubelet's SIGKILL comes only after the preStop sleep, the shutdown delay and
    // the drain (the background tasks stop within the drain timeout first, then the RPCs drain
    // within it again: src/app/lifecycle.rs).
    let pre_stop = server["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .expect("a preStop sleep");
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    let needed = Duration::from_secs(pre_stop)
        + settings.server.shutdown_delay
        + 2 * settings.server.shutdown_drain_timeout;
    assert!(
        Duration::from_secs(grace) > needed,
        "terminationGracePeriodSeconds {grace} s must exceed preStop {pre_stop} s + \
         SHUTDOWN_DELAY_MS + 2 x SHUTDOWN_DRAIN_TIMEOUT_MS = {needed:?}"
    );

    // Secrets: only as files of the mounted Secret, each named after its setting.
    let secret_mount = server["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|mount| {
            pod["volumes"].as_array().unwrap().iter().any(|volume| {
                volume["name"] == mount["name"] && volume["secret"]["secretName"] == SECRET_VOLUME
            })
        })
        .expect("the Secret is mounted");
    assert_eq!(secret_mount["readOnly"], true);
    let mount_path = PathBuf::from(secret_mount["mountPath"].as_str().unwrap());
    for secret in SECRET_SETTINGS {
        assert!(
            !data.contains_key(secret),
            "the ConfigMap sets the secret {secret}: give it as a file of the Secret"
        );
    }
    let files: Vec<(&String, &String)> = data
        .iter()
        .filter(|(key, _)| key.ends_with(FILE_SUFFIX))
        .collect();
    assert!(
        files.len() >= 4,
        "the required secrets come from files: {files:?}"
    );
    for (key, path) in files {
        let secret = key.strip_suffix(FILE_SUFFIX).unwrap();
        assert!(
            SECRET_SETTINGS.contains(&secret),
            "{key} names no secret setting"
        );
        assert_eq!(Path::new(path), mount_path.join(secret), "{key}");
    }
    // Every workload of the service reads the same settings and the same Secret.
    let job = object(&objects, "Job", "supportdesk-migrate");
    let migrate = container(pod_spec(job), "migrate");
    assert_eq!(migrate["args"], serde_json::json!(["migrate"]));
    assert_eq!(migrate["envFrom"], server["envFrom"]);
    assert_eq!(
        migrate["volumeMounts"][0]["mountPath"],
        secret_mount["mountPath"]
    );

    // Rolling updates and scaling.
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 3);
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    let surge = spec["strategy"]["rollingUpdate"]["maxSurge"]
        .as_u64()
        .unwrap();
    let autoscaler = object(&objects, "HorizontalPodAutoscaler", "supportdesk");
    assert_eq!(autoscaler["spec"]["minReplicas"], spec["replicas"]);
    let most = autoscaler["spec"]["maxReplicas"].as_u64().unwrap();
    // The PostgreSQL connection budget: every pod's pool at once, during a rolling update at
    // the HPA's ceiling, and the migration's one connection.
    let budget = (most + surge) * u64::from(settings.database.pool_size) + 1;
    assert!(
        budget <= POSTGRES_CONNECTIONS,
        "(maxReplicas {most} + maxSurge {surge}) x DATABASE_POOL_SIZE {} + 1 = {budget} \
         connections exceed PostgreSQL's default max_connections less its reserve \
         ({POSTGRES_CONNECTIONS}): docs/deployment.md, \"Scaling\"",
        settings.database.pool_size
    );
    // One runtime worker per CPU the container may use.
    if let Some(workers) = settings.server.worker_threads {
        assert_eq!(
            server["resources"]["limits"]["cpu"],
            workers.get().to_string(),
            "WORKER_THREADS matches the CPU limit"
        );
    }
}

#[test]
fn the_image_the_base_deploys_is_the_version_of_cargo_toml() {
    let objects = rendered(BASE);
    let deployment = object(&objects, "Deployment", "supportdesk");
    assert_eq!(
        container(pod_spec(deployment), "supportdesk")["image"],
        format!("supportdesk:{}", env!("CARGO_PKG_VERSION")),
        "deploy/kubernetes/base/kustomization.yaml's images: newTag is Cargo.toml's version"
    );
}

/// The environment the Envoy pod's init container `envoy-config` gets: the ConfigMaps of its
/// `envFrom` in order, then its `env`, as the kubelet builds it.
fn envoy_init_environment(objects: &[Value]) -> Vec<(String, String)> {
    let deployment = object(objects, "Deployment", "supportdesk-envoy");
    let init = pod_spec(deployment)["initContainers"]
        .as_array()
        .expect("init containers")
        .iter()
        .find(|container| container["name"] == "envoy-config")
        .expect("the envoy-config init container");
    let mut environment = Vec::new();
    for source in init["envFrom"].as_array().into_iter().flatten() {
        let name = source["configMapRef"]["name"]
            .as_str()
            .expect("envFrom names a ConfigMap");
        let data = object(objects, "ConfigMap", name)["data"]
            .as_object()
            .expect("the ConfigMap's data");
        for (key, value) in data {
            environment.push((key.clone(), value.as_str().expect("a string").to_owned()));
        }
    }
    for variable in init["env"].as_array().into_iter().flatten() {
        environment.push((
            variable["name"].as_str().expect("a name").to_owned(),
            variable["value"].as_str().expect("a value").to_owned(),
        ));
    }
    environment
}

/// What the init container `envoy-config` writes, its command run here with its environment
/// (`arguments` added to its own).
fn envoy_init_container_output(objects: &[Value], arguments: &[String]) -> String {
    let deployment = object(objects, "Deployment", "supportdesk-envoy");
    let init = pod_spec(deployment)["initContainers"]
        .as_array()
        .expect("init containers")
        .iter()
        .find(|container| container["name"] == "envoy-config")
        .expect("the envoy-config init container");
    let args: Vec<String> = init["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|arg| arg.as_str().expect("an argument").to_owned())
        .collect();
    assert_eq!(args[..3], ["envoy-config", "--shape", "kubernetes"]);
    // It writes where Envoy reads.
    let out = args
        .iter()
        .position(|arg| arg == "--out")
        .map(|index| args[index + 1].clone())
        .expect("envoy-config --out");
    let envoy_args = &container(pod_spec(deployment), "envoy")["args"];
    assert!(
        envoy_args
            .as_array()
            .expect("Envoy's args")
            .windows(2)
            .any(|pair| pair[0] == "--config-path" && pair[1] == out.as_str()),
        "Envoy reads {out}: {envoy_args}"
    );
    let environment = envoy_init_environment(objects);
    let settings: Vec<(&str, String)> = environment
        .iter()
        .map(|(name, value)| (name.as_str(), value.clone()))
        .collect();
    let mut arguments: Vec<String> = arguments.to_vec();
    arguments.splice(0..0, ["--shape".to_owned(), "kubernetes".to_owned()]);
    let output = crate::support::envoy::envoy_config(&settings, &arguments)
        .output()
        .expect("run supportdesk envoy-config");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[test]
fn the_base_envoy_allows_no_browser_origin_and_the_overlay_changes_only_its_origins() {
    let base = envoy_init_environment(&rendered(BASE));
    let overlay = envoy_init_environment(&rendered(OVERLAY));
    let value = |environment: &[(String, String)], wanted: &str| {
        environment
            .iter()
            .rev()
            .find(|(name, _)| name == wanted)
            .map(|(_, value)| value.clone())
    };
    assert_eq!(value(&base, "CORS_ALLOWED_ORIGINS").as_deref(), Some(""));
    assert_eq!(
        value(&overlay, "CORS_ALLOWED_ORIGINS").as_deref(),
        Some("https://desk.example.com")
    );
    for name in [
        "ROUTE_TIMEOUT_SECS",
        "STREAM_INSTANCES",
        "SHUTDOWN_DELAY_MS",
    ] {
        assert_eq!(value(&base, name), value(&overlay, name), "{name}");
        assert!(value(&base, name).is_some(), "{name}");
    }
}

/// Envoy's Kubernetes configuration (the overlay's, as its init container renders it) with what
/// only a cluster has made local: the Service's name resolves to this machine, the init
/// containers' files are written here and the listeners take free ports. Returns the
/// configuration and the REST and probes ports.
fn local_kubernetes_envoy_config(grpc_port: u16, workdir: &Path) -> (String, u16, u16) {
    std::fs::write(
        workdir.join("supportdesk.pb"),
        supportdesk::wire::proto::FILE_DESCRIPTOR_SET,
    )
    .expect("write the descriptor set");
    std::fs::copy(
        repository_root().join("docs/openapi.json"),
        workdir.join("openapi.json"),
    )
    .expect("copy the OpenAPI document");
    let (rest, probes) = (free_port(), free_port());
    let config = envoy_init_container_output(
        &rendered(OVERLAY),
        &[
            "--listen-port".to_owned(),
            rest.to_string(),
            "--probes-port".to_owned(),
            probes.to_string(),
            "--admin-port".to_owned(),
            free_port().to_string(),
            "--descriptor".to_owned(),
            workdir.join("supportdesk.pb").display().to_string(),
            "--openapi-document".to_owned(),
            workdir.join("openapi.json").display().to_string(),
        ],
    );
    // The headless Service's name, made this machine's.
    assert_eq!(config.matches("address: supportdesk-grpc").count(), 2);
    let config = config
        .replace("address: supportdesk-grpc", "address: localhost")
        .replace("port_value: 50051", &format!("port_value: {grpc_port}"));
    (config, rest, probes)
}

#[tokio::test]
async fn envoy_serves_with_its_kubernetes_configuration_and_answers_the_kubelets_probe() {
    let app = TestApp::spawn().await;
    app.wait_for_health("Serving", PATIENCE).await;
    let workdir = tempfile::tempdir().expect("a temporary directory");
    let (config, rest, probes) = local_kubernetes_envoy_config(app.address.port(), workdir.path());
    let config_path = workdir.path().join("envoy.yaml");
    std::fs::write(&config_path, &config).expect("write the configuration");
    let mut child = Command::new(envoy())
        .arg("-c")
        .arg(&config_path)
        .args(["--disable-hot-restart", "--log-level", "error"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start envoy");
    let client = reqwest::Client::new();
    let ready = format!("http://127.0.0.1:{probes}/ready");
    wait_until("Envoy answers /ready", PATIENCE, || async {
        client
            .get(&ready)
            .send()
            .await
            .is_ok_and(|response| response.status() == 200)
    })
    .await;
    // The probes listener answers nothing else: the admin interface stays out of reach.
    for path in ["/stats", "/quitquitquit", "/config_dump"] {
        let response = client
            .get(format!("http://127.0.0.1:{probes}{path}"))
            .send()
            .await
            .expect("the probes listener answers");
        assert_eq!(response.status(), 404, "{path}");
    }
    let response = client
        .post(format!("http://127.0.0.1:{probes}/ready"))
        .send()
        .await
        .expect("the probes listener answers");
    assert_eq!(response.status(), 404, "only GET /ready");
    // REST through the STRICT_DNS cluster to the service: health and a transcoded call.
    let health = client
        .get(format!("http://127.0.0.1:{rest}/healthz"))
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), 200);
    let me = client
        .get(format!("http://127.0.0.1:{rest}/v1/me"))
        .bearer_auth(&app.admin.access_token)
        .send()
        .await
        .expect("GET /v1/me");
    assert_eq!(me.status(), 200, "{:?}", me.text().await);
    let openapi = client
        .get(format!("http://127.0.0.1:{rest}/v1/openapi.json"))
        .send()
        .await
        .expect("GET /v1/openapi.json");
    assert_eq!(
        openapi.status(),
        200,
        "the document the init container writes"
    );
    child.kill().expect("stop envoy");
    let _ = child.wait();
}
