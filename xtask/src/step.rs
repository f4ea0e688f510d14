//! One external command run as a named step: printed first, and failing with the step's name.

use std::ffi::OsStr;
use std::fmt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// An external command with the name of the step it performs, run from the workspace root.
pub(crate) struct Step {
    name: &'static str,
    command: Command,
}

impl Step {
    /// A `cargo` invocation for the step `name`, run from `root`.
    pub(crate) fn cargo(name: &'static str, root: &Path) -> Self {
        let mut command = Command::new("cargo");
        command.current_dir(root);
        Self { name, command }
    }

    /// Any program for the step `name`, run from `dir`.
    pub(crate) fn program(name: &'static str, program: &str, dir: &Path) -> Self {
        let mut command = Command::new(program);
        command.current_dir(dir);
        Self { name, command }
    }

    /// Appends arguments.
    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    /// Sets an environment variable for the command.
    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.command.env(key, value);
        self
    }

    /// Prints the command, runs it, and fails naming the step unless it exits successfully.
    pub(crate) fn run(mut self) -> Result<()> {
        let shown = self.to_string();
        println!("\n[xtask {}] $ {shown}", self.name);
        let status = self
            .command
            .status()
            .with_context(|| format!("step `{}` failed: could not start `{shown}`", self.name))?;
        if !status.success() {
            bail!(
                "step `{}` failed: `{shown}` exited with {status}",
                self.name
            );
        }
        Ok(())
    }

    /// Like [`run`](Step::run), but kills the command and fails once it has run for `limit`.
    pub(crate) fn run_within(mut self, limit: Duration) -> Result<()> {
        let shown = self.to_string();
        println!("\n[xtask {}] $ {shown}", self.name);
        let mut child = self
            .command
            .spawn()
            .with_context(|| format!("step `{}` failed: could not start `{shown}`", self.name))?;
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() >= limit {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "step `{}` failed: `{shown}` still ran after {}s and was killed",
                    self.name,
                    limit.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if !status.success() {
            bail!(
                "step `{}` failed: `{shown}` exited with {status}",
                self.name
            );
        }
        Ok(())
    }

    /// Like [`run`](Step::run), but returns what the command printed on stdout (stderr is
    /// shown as usual).
    pub(crate) fn output(mut self) -> Result<String> {
        let shown = self.to_string();
        println!("\n[xtask {}] $ {shown}", self.name);
        let output = self
            .command
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("step `{}` failed: could not start `{shown}`", self.name))?;
        if !output.status.success() {
            bail!(
                "step `{}` failed: `{shown}` exited with {}",
                self.name,
                output.status
            );
        }
        String::from_utf8(output.stdout)
            .with_context(|| format!("step `{}` failed: `{shown}` printed non-UTF-8", self.name))
    }

    /// Prints the command and runs it, reporting only whether it succeeded: for probes whose
    /// failure is an answer, not an error.
    pub(crate) fn probe(mut self) -> bool {
        println!("\n[xtask {}] $ {self}", self.name);
        self.command.status().is_ok_and(|status| status.success())
    }
}

/// Shell-like rendering, so a printed command can be pasted back into a terminal.
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, value) in self.command.get_envs() {
            if let Some(value) = value {
                write!(f, "{}={} ", key.to_string_lossy(), quoted(value))?;
            }
        }
        write!(f, "{}", quoted(self.command.get_program()))?;
        for arg in self.command.get_args() {
            write!(f, " {}", quoted(arg))?;
        }
        Ok(())
    }
}

fn quoted(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=+./:,@%".contains(c));
    if plain {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_env_program_and_quoted_args() {
        let step = Step::cargo("doc", Path::new("."))
            .env("RUSTDOCFLAGS", "-D warnings")
            .args(["doc", "--workspace", "it's"]);
        assert_eq!(
            step.to_string(),
            r"RUSTDOCFLAGS='-D warnings' cargo doc --workspace 'it'\''s'"
        );
    }

    #[test]
    fn failure_names_the_step_and_the_command() {
        let error = Step::cargo("lint", Path::new("."))
            .args(["xtask-no-such-subcommand"])
            .run()
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(
            error.starts_with("step `lint` failed: `cargo xtask-no-such-subcommand` exited with")
        );
    }
}
