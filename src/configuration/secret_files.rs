//! Secrets from files: every secret setting `NAME` may instead be given as `NAME_FILE`, the path
//! of a file holding the value (a Kubernetes Secret volume, a Docker or Podman secret under
//! `/run/secrets/`), so that the value never sits in the process environment, where
//! `/proc/<pid>/environ`, `docker inspect` and crash reports can show it.
//!
//! The rules, checked at start-up with every other setting: setting both `NAME` and `NAME_FILE`
//! is refused naming both; a file that is missing, unreadable, larger than 64 KiB (read no
//! further: `/dev/zero` by mistake), not UTF-8 or empty is refused naming the setting and the
//! path, never the content; one trailing newline (`\n` or `\r\n`,
//! what `echo` and editors add) is trimmed, and nothing else is.

use std::collections::HashMap;

/// The settings that hold secrets (or the half of a credential kept beside one), each also read
/// from the file `<NAME>_FILE` names. docs/deployment.md lists them; the Kubernetes manifests'
/// policy test refuses a ConfigMap that sets one of them.
pub const SECRET_SETTINGS: [&str; 15] = [
    "DATABASE_URL",
    "DATABASE_READ_REPLICA_URL",
    "REDIS_URL",
    "JWT_SECRET",
    "PAGE_TOKEN_KEYS",
    "IDEMPOTENCY_FINGERPRINT_KEY",
    "PAYMENT_PROVIDER_SECRET_KEY",
    "PAYMENT_WEBHOOK_SECRET",
    "EMAIL_WEBHOOK_SECRET",
    "EMAIL_API_KEY",
    "SMTP_USERNAME",
    "SMTP_PASSWORD",
    "STORAGE_ACCESS_KEY_ID",
    "STORAGE_SECRET_ACCESS_KEY",
    "WEBHOOK_ENDPOINT_SECRETS_KEY",
];

/// The largest secret file read: far above any secret (a database URL, a list of page-token
/// keys), far below what would hurt the process.
const MAX_SECRET_FILE_BYTES: usize = 64 * 1024;

/// The suffix of the variable naming a secret's file.
pub const FILE_SUFFIX: &str = "_FILE";

/// The secret settings' values as resolved once at start-up, from the variable itself or from
/// its file, and what was wrong with the files.
#[derive(Debug, Default)]
pub(super) struct SecretValues {
    /// The value of each secret setting that has one (blank values count as unset, as for
    /// every setting).
    values: HashMap<&'static str, String>,
    /// The settings whose file could not be used: the reason is in `problems`, and the
    /// sections' own "is not set" for them would only repeat it.
    failed: Vec<&'static str>,
    /// One line per refused setting, naming it and the path, never the content.
    pub(super) problems: Vec<String>,
}

impl SecretValues {
    /// Resolves every secret setting through `lookup`.
    pub(super) fn resolve(lookup: &dyn Fn(&str) -> Option<String>) -> Self {
        let mut resolved = Self::default();
        for name in SECRET_SETTINGS {
            let file_variable = format!("{name}{FILE_SUFFIX}");
            let direct = lookup(name).filter(|value| !value.trim().is_empty());
            let path = lookup(&file_variable).filter(|value| !value.trim().is_empty());
            match (direct, path) {
                (Some(_), Some(_)) => {
                    resolved.problems.push(format!(
                        "{file_variable} and {name} are both set: set one of them (the file \
                         is for secrets mounted from a Secret, the variable for everything else)"
                    ));
                    resolved.failed.push(name);
                }
                (Some(value), None) => {
                    resolved.values.insert(name, value);
                }
                (None, Some(path)) => match read_secret_file(path.trim()) {
                    Ok(value) => {
                        resolved.values.insert(name, value);
                    }
                    Err(reason) => {
                        resolved
                            .problems
                            .push(format!("{file_variable}={:?}: {reason}", path.trim()));
                        resolved.failed.push(name);
                    }
                },
                (None, None) => {}
            }
        }
        resolved
    }

    /// The value of the secret setting `name`, or `None` when it has none (or when `name` is
    /// not a secret setting).
    pub(super) fn get(&self, name: &str) -> Option<String> {
        self.values.get(name).cloned()
    }

    /// Whether `problem`, a section's, is about a setting whose file was refused: the refusal
    /// already names it, and "is not set" would mislead.
    pub(super) fn repeats_a_refusal(&self, problem: &str) -> bool {
        self.failed.iter().any(|name| {
            problem.strip_prefix(name).is_some_and(|rest| {
                !rest
                    .chars()
                    .next()
                    .is_some_and(|next| next.is_ascii_alphanumeric() || next == '_')
            })
        })
    }
}

/// The secret in the file at `path`: its content less one trailing newline. The error says what
/// is wrong with the file, never what is in it.
fn read_secret_file(path: &str) -> Result<String, String> {
    use std::io::Read as _;
    let cannot_read = |error: std::io::Error| format!("cannot read the file: {error}");
    let mut bytes = Vec::new();
    // Read one byte past the cap, never the whole file: a path naming /dev/zero or a log
    // file by mistake must stop the start with a message, not fill the memory.
    std::fs::File::open(path)
        .map_err(cannot_read)?
        .take(MAX_SECRET_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot_read)?;
    if bytes.len() > MAX_SECRET_FILE_BYTES {
        return Err(format!(
            "the file is larger than {} KiB: a secret is a few hundred bytes at most, so this \
             is not the secret's file",
            MAX_SECRET_FILE_BYTES / 1024
        ));
    }
    let mut text = String::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".to_owned())?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.trim().is_empty() {
        return Err("the file is empty".to_owned());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use secrecy::ExposeSecret;

    use super::super::Settings;
    use super::*;

    const JWT: &str = "0123456789abcdef0123456789abcdef-from-a-file";

    /// The settings every start needs, less `leave_out`, plus `extra`.
    fn settings_with(
        leave_out: &[&str],
        extra: &[(&str, String)],
    ) -> Result<Settings, super::super::ConfigError> {
        let mut values: HashMap<String, String> = [
            ("DATABASE_URL", "postgres://app:hunter2@db/supportdesk"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef-hunter2"),
            (
                "IDEMPOTENCY_FINGERPRINT_KEY",
                "fedcba9876543210fedcba9876543210-hunter2",
            ),
        ]
        .into_iter()
        .filter(|(key, _)| !leave_out.contains(key))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        values.extend(
            extra
                .iter()
                .map(|(key, value)| ((*key).to_owned(), value.clone())),
        );
        Settings::from_lookup(|key| values.get(key).cloned())
    }

    fn secret_file(content: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
        file.write_all(content).expect("write the secret");
        file
    }

    fn path_of(file: &tempfile::NamedTempFile) -> String {
        file.path().to_str().expect("a UTF-8 path").to_owned()
    }

    #[test]
    fn a_secret_is_read_from_its_file_with_one_trailing_newline_trimmed() {
        let file = secret_file(format!("{JWT}\n").as_bytes());
        let settings = settings_with(&["JWT_SECRET"], &[("JWT_SECRET_FILE", path_of(&file))])
            .expect("valid settings");
        assert_eq!(settings.auth.jwt_secret.expose_secret(), JWT);

        // Only one: a value that really ends in a newline keeps the rest (and CRLF counts as one).
        let file = secret_file(format!("{JWT} \n\n").as_bytes());
        let settings = settings_with(&["JWT_SECRET"], &[("JWT_SECRET_FILE", path_of(&file))])
            .expect("valid settings");
        assert_eq!(
            settings.auth.jwt_secret.expose_secret(),
            format!("{JWT} \n")
        );
        let file = secret_file(format!("{JWT}\r\n").as_bytes());
        let settings = settings_with(&["JWT_SECRET"], &[("JWT_SECRET_FILE", path_of(&file))])
            .expect("valid settings");
        assert_eq!(settings.auth.jwt_secret.expose_secret(), JWT);
    }

    #[test]
    fn every_secret_setting_is_read_from_its_file() {
        // Each secret given only as a file, with the settings that make it used.
        let values = [
            ("DATABASE_URL", "postgres://app:file-pass@db/supportdesk"),
            (
                "DATABASE_READ_REPLICA_URL",
                "postgres://app:file-pass@replica/supportdesk",
            ),
            ("REDIS_URL", "redis://:file-pass@cache:6379"),
            ("JWT_SECRET", JWT),
            (
                "PAGE_TOKEN_KEYS",
                "page-key-one-0123456789abcdef0123456789,page-key-two-0123456789abcdef012345",
            ),
            (
                "IDEMPOTENCY_FINGERPRINT_KEY",
                "fingerprint-key-from-a-file-0123456789abcdef",
            ),
            ("PAYMENT_PROVIDER_SECRET_KEY", "sk_live_from_a_file"),
            (
                "PAYMENT_WEBHOOK_SECRET",
                "whsec_from_a_file_0123456789abcdef0123456789",
            ),
            (
                "EMAIL_WEBHOOK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
            ("EMAIL_API_KEY", "re_from_a_file"),
            ("SMTP_USERNAME", "relay-user"),
            ("SMTP_PASSWORD", "relay-pass-from-a-file"),
            ("STORAGE_ACCESS_KEY_ID", "AKIAFROMAFILE"),
            ("STORAGE_SECRET_ACCESS_KEY", "storage-secret-from-a-file"),
            (
                "WEBHOOK_ENDPOINT_SECRETS_KEY",
                "endpoint-secrets-key-from-a-file-0123456789",
            ),
        ];
        assert_eq!(
            values.map(|(name, _)| name),
            SECRET_SETTINGS,
            "this test covers every secret setting"
        );
        let files: Vec<(String, tempfile::NamedTempFile)> = values
            .iter()
            .map(|(name, value)| {
                (
                    format!("{name}{FILE_SUFFIX}"),
                    secret_file(format!("{value}\n").as_bytes()),
                )
            })
            .collect();
        let mut extra_owned: Vec<(&str, String)> = files
            .iter()
            .map(|(variable, file)| (variable.as_str(), path_of(file)))
            .collect();
        for (key, value) in [
            ("PAYMENT_PROVIDER_URL", "http://payments.internal:8080"),
            ("STORAGE_ENDPOINT", "http://store.internal:8333"),
            ("STORAGE_BUCKET", "attachments"),
        ] {
            extra_owned.push((key, value.to_owned()));
        }
        let with_provider = |provider: &str| {
            let mut extra = extra_owned.clone();
            extra.push(("EMAIL_PROVIDER", provider.to_owned()));
            extra.push(("PUBLIC_BASE_URL", "https://desk.example.com".to_owned()));
            extra.push(("EMAIL_FROM", "Support <support@example.com>".to_owned()));
            extra.push(("SMTP_HOST", "relay.internal".to_owned()));
            extra.push(("EMAIL_API_URL", "https://api.email.example".to_owned()));
            settings_with(SECRET_SETTINGS.as_slice(), &extra)
        };

        let settings = with_provider("smtp").expect("valid settings");
        let value = |name: &str| {
            values
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| *value)
                .unwrap()
        };
        assert_eq!(settings.database.url.expose_secret(), value("DATABASE_URL"));
        assert_eq!(
            settings
                .database
                .read_replica_url
                .as_ref()
                .map(|url| url.expose_secret().to_owned())
                .as_deref(),
            Some(value("DATABASE_READ_REPLICA_URL"))
        );
        assert_eq!(settings.redis.url.expose_secret(), value("REDIS_URL"));
        assert_eq!(
            settings.auth.jwt_secret.expose_secret(),
            value("JWT_SECRET")
        );
        assert_eq!(
            settings
                .auth
                .page_token_keys
                .iter()
                .map(|key| key.expose_secret().to_owned())
                .collect::<Vec<_>>()
                .join(","),
            value("PAGE_TOKEN_KEYS")
        );
        assert_eq!(
            settings.idempotency.fingerprint_key.expose_secret(),
            value("IDEMPOTENCY_FINGERPRINT_KEY")
        );
        assert_eq!(
            settings
                .payment_provider
                .as_ref()
                .map(|provider| provider.secret_key.expose_secret().to_owned())
                .as_deref(),
            Some(value("PAYMENT_PROVIDER_SECRET_KEY"))
        );
        assert_eq!(
            settings
                .webhook_receiving
                .secrets
                .iter()
                .map(|secret| secret.expose_secret().to_owned())
                .collect::<Vec<_>>(),
            [value("PAYMENT_WEBHOOK_SECRET")]
        );
        assert_eq!(
            settings
                .email_webhook
                .secret
                .as_ref()
                .map(|secret| secret.expose_secret().to_owned())
                .as_deref(),
            Some(value("EMAIL_WEBHOOK_SECRET"))
        );
        let storage = settings.attachments.storage.as_ref().expect("storage");
        assert_eq!(storage.access_key_id, value("STORAGE_ACCESS_KEY_ID"));
        assert_eq!(
            storage.secret_access_key.expose_secret(),
            value("STORAGE_SECRET_ACCESS_KEY")
        );
        assert_eq!(
            settings
                .outbound_webhooks
                .secrets_key
                .as_ref()
                .map(|key| key.expose_secret().to_owned())
                .as_deref(),
            Some(value("WEBHOOK_ENDPOINT_SECRETS_KEY"))
        );
        let email = settings.notifications.email.as_ref().expect("email");
        let super::super::EmailProviderSettings::Smtp(smtp) = &email.provider else {
            panic!("smtp was chosen: {:?}", email.provider);
        };
        let (username, password) = smtp.credentials.as_ref().expect("credentials");
        assert_eq!(username, value("SMTP_USERNAME"));
        assert_eq!(password.expose_secret(), value("SMTP_PASSWORD"));

        let settings = with_provider("http").expect("valid settings");
        let email = settings.notifications.email.as_ref().expect("email");
        let super::super::EmailProviderSettings::Http(http) = &email.provider else {
            panic!("http was chosen: {:?}", email.provider);
        };
        assert_eq!(http.api_key.expose_secret(), value("EMAIL_API_KEY"));
    }

    #[test]
    fn a_secret_set_both_ways_is_refused_naming_both() {
        let file = secret_file(JWT.as_bytes());
        let text = settings_with(&[], &[("JWT_SECRET_FILE", path_of(&file))])
            .expect_err("both set")
            .to_string();
        assert!(
            text.contains("JWT_SECRET_FILE and JWT_SECRET are both set"),
            "{text}"
        );
        assert!(!text.contains(JWT), "never the content: {text}");
        assert!(!text.contains("hunter2"), "never the other value: {text}");
    }

    #[test]
    fn a_missing_unreadable_or_empty_file_is_refused_naming_the_setting_and_the_path_only() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let missing = directory.path().join("no-such-secret");
        let missing = missing.to_str().unwrap();
        let unreadable = directory.path().to_str().unwrap();
        let empty = secret_file(b"\n");
        let not_text = secret_file(b"\xff\xfe-secret-bytes");
        for (path, reason) in [
            (missing, "cannot read the file"),
            (unreadable, "cannot read the file"),
            (path_of(&empty).as_str(), "the file is empty"),
            (path_of(&not_text).as_str(), "the file is not UTF-8 text"),
        ] {
            let problems =
                settings_with(&["DATABASE_URL"], &[("DATABASE_URL_FILE", path.to_owned())])
                    .expect_err("a file that cannot be used")
                    .problems;
            assert_eq!(
                problems.len(),
                1,
                "one problem, about the file alone (no `DATABASE_URL is not set` after it): \
                 {problems:?}"
            );
            assert!(
                problems[0].starts_with(&format!("DATABASE_URL_FILE={path:?}: {reason}")),
                "{problems:?}"
            );
            assert!(!problems[0].contains("secret-bytes"), "{problems:?}");
        }
    }

    #[test]
    fn an_oversized_secret_file_is_refused_naming_the_setting_before_it_is_read_whole() {
        // A regular file a byte over the cap, then a device that never ends: /dev/zero used to
        // be read until the process ran out of memory at start.
        const CAP: usize = 64 * 1024;
        let oversized = secret_file(&vec![b'k'; CAP + 1]);
        let at_the_cap = secret_file(&vec![b'k'; CAP]);
        for path in [path_of(&oversized).as_str(), "/dev/zero"] {
            let problems = settings_with(&["JWT_SECRET"], &[("JWT_SECRET_FILE", path.to_owned())])
                .expect_err("a secret file over the cap")
                .problems;
            assert_eq!(
                problems,
                [format!(
                    "JWT_SECRET_FILE={path:?}: the file is larger than 64 KiB: a secret is a few \
                     hundred bytes at most, so this is not the secret's file"
                )]
            );
        }
        let settings = settings_with(
            &["JWT_SECRET"],
            &[("JWT_SECRET_FILE", path_of(&at_the_cap))],
        )
        .expect("a file of exactly the cap is read");
        assert_eq!(settings.auth.jwt_secret.expose_secret().len(), CAP);
    }

    #[test]
    fn a_file_variable_of_a_setting_that_is_no_secret_is_not_read() {
        // `_FILE` is for secrets: a ConfigMap's plain settings stay plain variables.
        let settings = settings_with(
            &[],
            &[("GRPC_LISTEN_ADDR_FILE", "/nonexistent/addr".to_owned())],
        )
        .expect("ignored");
        assert_eq!(
            settings.server.listen_addr,
            "127.0.0.1:50051".parse().unwrap()
        );
    }
}
