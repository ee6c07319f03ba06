//! The command line [C]: flags in any order, usage on a bad one.

use std::path::PathBuf;

pub const USAGE: &str = "\
Usage: hawkey [-c|--config PATH] [--check]
       hawkey --help | --version

A small reverse proxy: routes requests by pathRegExp to HTTP/1.1 backends.

Options:
  -c, --config PATH  the config file (default: server-config.json in the
                     working directory); relative paths inside it resolve
                     against its directory
      --check        load and validate the config, print \"config OK\", exit
  -h, --help         print this help and exit
  -V, --version      print the version and exit

Exit status: 0 on success, 1 for a config or start-up error, 2 for a bad flag.";

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    /// Run (or with `check`, only validate) with the config at `config`.
    Run {
        config: PathBuf,
        check: bool,
    },
}

/// Reads the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter();
    let (mut config, mut check, mut help, mut version) = (None, false, false, false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => help = true,
            "-V" | "--version" => version = true,
            "--check" => check = true,
            "-c" | "--config" => config = Some(args.next().ok_or(format!("{arg} needs a PATH"))?),
            _ => match arg.strip_prefix("--config=") {
                Some(path) => config = Some(path.to_string()),
                None => return Err(format!("unknown argument {arg:?}")),
            },
        }
    }
    Ok(if help {
        Command::Help
    } else if version {
        Command::Version
    } else {
        Command::Run {
            config: PathBuf::from(config.unwrap_or_else(|| "server-config.json".into())),
            check,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags_in_any_order() {
        let want = Command::Run {
            config: "a.json".into(),
            check: true,
        };
        assert_eq!(parse_str(&["--check", "-c", "a.json"]), Ok(want));
        let want = Command::Run {
            config: "b.json".into(),
            check: false,
        };
        assert_eq!(parse_str(&["--config=b.json"]), Ok(want));
        assert_eq!(parse_str(&["-c", "x", "--help"]), Ok(Command::Help));
        assert_eq!(parse_str(&["--version"]), Ok(Command::Version));
        assert_eq!(
            parse_str(&[]),
            Ok(Command::Run {
                config: "server-config.json".into(),
                check: false
            })
        );
    }

    #[test]
    fn bad_flags() {
        assert!(parse_str(&["--nope"]).is_err());
        assert!(parse_str(&["-c"]).is_err());
    }
}
