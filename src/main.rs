//! argv → cli → config::load → server::run; exit 0, 1 (config or start-up) or 2 (flags) [C].

use std::process::ExitCode;

use hawkey::cli::{self, Command, USAGE};
use hawkey::config::Config;

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("hawkey: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (path, check) = match command {
        Command::Help => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("hawkey {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Run { config, check } => (config, check),
    };
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("hawkey: {e}");
            return ExitCode::from(1);
        }
    };
    if check {
        println!("config OK");
        return ExitCode::SUCCESS;
    }
    match hawkey::server::run(config, &path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hawkey: {e}");
            ExitCode::from(1)
        }
    }
}
