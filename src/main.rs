//! The `sockwatch` binary: parse the command line, run, turn the result into
//! an exit code. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = sockwatch::cli::Args::parse();
    match sockwatch::cli::run(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("sockwatch: {error:#}");
            ExitCode::from(sockwatch::cli::exit_code(&error))
        }
    }
}
