//! The TypeScript client as `deploy/local/generate-client` builds it (types from the OpenAPI
//! document, the protos' descriptor set, `tsc --strict` into `dist/`), in a directory of its own,
//! and its programs run with the installed Node.

use std::path::Path;
use std::process::Command;

use super::{repository_root, tool};

pub(crate) struct TypescriptClient {
    dir: tempfile::TempDir,
}

impl TypescriptClient {
    /// Generates and compiles the client; fails the test with generate-client's output if it
    /// cannot (a document or a proto the client does not type-check against).
    pub(crate) fn generate() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let generated = Command::new(repository_root().join("deploy/local/generate-client"))
            .arg(dir.path())
            .env("OPENAPI_TYPESCRIPT_BIN", tool("OPENAPI_TYPESCRIPT_BIN"))
            .env("TSC_BIN", tool("TSC_BIN"))
            .env("BUF_BIN", tool("BUF_BIN"))
            .output()
            .expect("run deploy/local/generate-client");
        assert!(
            generated.status.success(),
            "generate-client:\n{}{}",
            String::from_utf8_lossy(&generated.stdout),
            String::from_utf8_lossy(&generated.stderr)
        );
        Self { dir }
    }

    /// `node dist/<program>.js`, ready for its arguments and environment.
    pub(crate) fn program(&self, program: &str) -> Command {
        let mut command = Command::new(tool("NODE_BIN"));
        command.arg(self.path().join(format!("dist/{program}.js")));
        command
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}
