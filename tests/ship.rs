//! What sockwatch installs beside itself: shell completions and the manual
//! page, checked with the programs that consume them (bash, groff), as a
//! user installing them would see them.

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

use crate::support::*;

/// Runs `program ARGS...` to completion.
fn tool(program: &str, args: &[&str]) -> Output {
    let mut command = Command::new(program);
    command.args(args);
    finish(command, PROMPTLY)
}

/// Runs `sockwatch ARGS...` (no source needed: these read no socket).
fn sockwatch(args: &[&str]) -> Output {
    tool(BIN, args)
}

#[test]
fn bash_sources_the_completion_script_and_completes_commands() {
    let script = format!(
        "source <('{BIN}' completions bash) && complete -p sockwatch && \
         COMP_WORDS=(sockwatch wa) && COMP_CWORD=1 && _sockwatch sockwatch wa sockwatch && \
         echo \"completes: ${{COMPREPLY[*]}}\""
    );
    let out = tool("bash", &["-c", &script]);
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stderr, "", "{out}");
    let lines = out.lines();
    assert_eq!(lines.len(), 2, "{out}");
    // `complete -p` prints the registration, ending with the command name.
    assert!(
        lines[0].starts_with("complete ") && lines[0].ends_with(" -F _sockwatch sockwatch"),
        "{out}"
    );
    assert_eq!(lines[1], "completes: watch wait", "{out}");
}

#[test]
fn every_other_shell_gets_a_script_for_sockwatch() {
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = sockwatch(&["completions", shell]);
        assert_eq!(out.code(), 0, "{shell}: {out}");
        assert_eq!(out.stderr, "", "{shell}: {out}");
        assert!(
            out.stdout.contains("sockwatch") && out.stdout.contains("wait"),
            "{shell}: the script names neither sockwatch nor its commands:\n{out}"
        );
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = sockwatch(&["completions", "tcsh"]);
    assert_eq!(out.code(), 2, "{out}");
    assert_eq!(out.stdout, "", "{out}");
    assert!(
        out.stderr.contains("invalid value 'tcsh'")
            && out.stderr.contains("bash, elvish, fish, powershell, zsh"),
        "{out}"
    );
    let out = sockwatch(&["completions"]);
    assert_eq!(out.code(), 2, "a shell is required: {out}");
}

#[test]
fn groff_renders_the_man_page_without_warnings() {
    let page = sockwatch(&["man"]);
    assert_eq!(page.code(), 0, "{page}");
    assert_eq!(page.stderr, "", "{page}");
    let path = std::env::temp_dir().join(format!("sockwatch-{}.1", std::process::id()));
    std::fs::write(&path, &page.stdout).unwrap();
    let checked = tool("groff", &["-man", "-ww", "-z", path.to_str().unwrap()]);
    let text = tool(
        "groff",
        &["-man", "-Tutf8", "-P", "-cbou", path.to_str().unwrap()],
    );
    let _ = std::fs::remove_file(&path);
    assert_eq!(checked.code(), 0, "{checked}");
    assert_eq!(checked.stderr, "", "groff warned:\n{checked}");
    assert_eq!(text.code(), 0, "{text}");
    // What a reader of the page sees: every command, and the sections a
    // parser cannot write.
    let headings: Vec<&str> = text
        .stdout
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with(' '))
        .collect();
    for heading in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "COMMANDS",
        "CONDITIONS",
        "EXIT STATUS",
        "EXAMPLES",
    ] {
        assert!(headings.contains(&heading), "no {heading}: {headings:?}");
    }
    for command in ["list", "watch", "wait", "run", "completions", "man"] {
        let subsection = format!("   sockwatch {command}");
        assert!(
            text.stdout.lines().any(|line| line == subsection),
            "no subsection for {command}:\n{}",
            text.stdout
        );
    }
    for row in ["0", "1", "2", "124", "126", "127", "128+N"] {
        assert!(
            text.stdout
                .lines()
                .any(|line| line.trim_start().starts_with(&format!("{row} "))),
            "exit status {row} is not listed:\n{}",
            text.stdout
        );
    }
}

#[test]
fn completions_and_man_end_quietly_on_a_closed_stdout() {
    for args in [&["completions", "bash"][..], &["man"]] {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array it is given.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both descriptors were just opened and are owned here only.
        let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        // The reader is gone before sockwatch writes a byte.
        drop(reader);
        let mut command = Command::new(BIN);
        command.args(args).stdout(Stdio::from(writer));
        let out = finish_with_stdout(command);
        assert_eq!(out.code(), 0, "{args:?}: {out}");
        assert_eq!(out.stderr, "", "{args:?}: {out}");
    }
}

/// Runs `command` with the stdout it was given, to completion.
fn finish_with_stdout(mut command: Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sockwatch");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let status = wait_deadline(&mut child, PROMPTLY);
    Output {
        status,
        stdout: String::new(),
        stderr,
    }
}
