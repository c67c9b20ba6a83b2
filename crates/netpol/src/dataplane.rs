//! The side effects on the node: `nft` runs through the configured command prefix (e.g.
//! `ip netns exec NS nft`). Only `table inet k8rs-netpol` is ever read or written.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::Error;
use crate::render::{Existing, TABLE, delete_table, parse_existing};

/// Runs the node's `nft`.
#[derive(Clone, Debug)]
pub struct Dataplane {
    nft: Vec<String>,
}

impl Dataplane {
    /// Uses `nft_command` (e.g. `["nft"]`; empty means `["nft"]`).
    pub fn new(nft_command: &[String]) -> Dataplane {
        let nft = if nft_command.is_empty() {
            vec!["nft".to_string()]
        } else {
            nft_command.to_vec()
        };
        Dataplane { nft }
    }

    fn nft(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.nft[0]);
        cmd.args(&self.nft[1..]).args(args);
        cmd
    }

    /// Runs `text` as one atomic `nft -f -` transaction; nothing changes if it fails.
    pub fn apply(&self, text: &str) -> Result<(), Error> {
        if text.is_empty() {
            return Ok(());
        }
        let mut child = self
            .nft(&["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(Error::NftSpawn)?;
        if let Some(mut stdin) = child.stdin.take() {
            // A write error means nft exited early; its status and stderr say why.
            let _ = stdin.write_all(text.as_bytes());
        }
        let out = child.wait_with_output().map_err(Error::NftSpawn)?;
        if !out.status.success() {
            return Err(Error::NftFailed(truncate(&String::from_utf8_lossy(
                &out.stderr,
            ))));
        }
        Ok(())
    }

    /// The names in the table; empty if it does not exist.
    pub fn existing(&self) -> Result<Existing, Error> {
        let out = self
            .nft(&["-j", "list", "table", "inet", TABLE])
            .stdin(Stdio::null())
            .output()
            .map_err(Error::NftSpawn)?;
        if out.status.success() {
            return Ok(parse_existing(&String::from_utf8_lossy(&out.stdout)));
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No such file or directory") {
            return Ok(Existing::default());
        }
        Err(Error::NftFailed(truncate(&stderr)))
    }

    /// The table as `nft list table` prints it (for tests and debugging).
    pub fn list(&self) -> Result<String, Error> {
        let out = self
            .nft(&["list", "table", "inet", TABLE])
            .stdin(Stdio::null())
            .output()
            .map_err(Error::NftSpawn)?;
        if !out.status.success() {
            return Err(Error::NftFailed(truncate(&String::from_utf8_lossy(
                &out.stderr,
            ))));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Removes the table; a missing table is fine.
    pub fn delete_table(&self) -> Result<(), Error> {
        self.apply(&delete_table())
    }
}

fn truncate(s: &str) -> String {
    const MAX: usize = 2000;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}
