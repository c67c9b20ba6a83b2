//! Running the node's network tools: a small trait so that the sync logic can be driven by a
//! recording fake, and the real implementation over `tokio::process` with a bounded wait.

use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::Error;

/// How long one command may run before it is killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one command line.
#[async_trait]
pub trait Exec: Send + Sync {
    /// Runs `argv` (with `stdin` fed to it), returning its standard output on success and
    /// [`Error::CommandFailed`] (with its standard error) otherwise.
    async fn run(&self, argv: &[String], stdin: Option<&str>) -> Result<String, Error>;

    /// Writes `value` to `/proc/sys/<key with dots as slashes>` of the host.
    async fn write_proc_sys(&self, key: &str, value: &str) -> Result<(), Error>;
}

/// The real commands.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessExec;

#[async_trait]
impl Exec for ProcessExec {
    async fn run(&self, argv: &[String], stdin: Option<&str>) -> Result<String, Error> {
        let command = argv.join(" ");
        let Some((program, args)) = argv.split_first() else {
            return Err(Error::InvalidConfig("empty command".into()));
        };
        let mut child = Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| Error::Spawn {
                command: command.clone(),
                source,
            })?;
        let mut pipe = child.stdin.take();
        if let (Some(text), Some(p)) = (stdin, pipe.as_mut()) {
            p.write_all(text.as_bytes())
                .await
                .map_err(|source| Error::Spawn {
                    command: command.clone(),
                    source,
                })?;
        }
        drop(pipe);
        let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| Error::CommandTimedOut {
                command: command.clone(),
            })?
            .map_err(|source| Error::Spawn {
                command: command.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(Error::CommandFailed {
                command,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    async fn write_proc_sys(&self, key: &str, value: &str) -> Result<(), Error> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        tokio::fs::write(&path, value)
            .await
            .map_err(|source| Error::Sysctl {
                key: key.to_string(),
                source,
            })
    }
}
