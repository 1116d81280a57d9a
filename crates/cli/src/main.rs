//! `registryctl`: command-line tool for the agent registry cluster.
//!
//! - [`args`]: arguments (clap derive).
//! - [`commands`]: one function per subcommand on top of
//!   [`registry_client::Client`], and the output.
//! - [`exit`]: the mapping of failures to exit codes.
//! - [`sidecar`]: `agent run`, which keeps an agent of any language
//!   registered while its health URL answers, beside it or around it.
//! - [`table`]: the plain text tables of `cluster`, `ready` and the `--table`
//!   form of `discover`, `capabilities` and `runtimes`.
//!
//! Data commands print pretty JSON on stdout; `watch` prints one compact JSON
//! line per event. Errors go to stderr as `error: <code>: <message>`.
//!
//! Exit codes: 0 ok, 1 the registry refused (API error), a node is not ready
//! or `select` found no agent, 2 usage error, 3 the cluster could not be
//! reached or could not serve, 4 `watch` fell behind the registry's event
//! window (`revision_compacted`: list again, then watch from the listing's
//! revision + 1).

mod args;
mod commands;
mod exit;
mod sidecar;
mod table;

use std::process::ExitCode;

use clap::Parser;

use args::*;
use commands::*;
use exit::*;

/// Settings read from the environment that an empty value leaves unset, as
/// curl and most tools take `VAR=`: clap would otherwise refuse the empty
/// string ("a value is required").
const UNSET_WHEN_EMPTY: [&str; 4] = [
    "REGISTRY_NODES",
    "REGISTRY_TOKEN",
    "REGISTRY_TOKEN_FILE",
    "REGISTRY_CACERT",
];

fn main() -> ExitCode {
    // Before any thread exists (the runtime is built below).
    for name in UNSET_WHEN_EMPTY {
        if std::env::var_os(name).is_some_and(|v| v.is_empty()) {
            std::env::remove_var(name);
        }
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => report(&err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use clap::Parser;

    use registry_client::types::EventKind;
    use registry_client::{ClientError, SelectStrategy, WatchError};

    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn nodes_are_comma_separated_and_flags_build_a_registration() {
        let cli = Cli::try_parse_from([
            "registryctl",
            "--nodes",
            "http://a:1,http://b:2",
            "register",
            "--id",
            "a1",
            "--name",
            "Coder",
            "--endpoint",
            "http://agent:9000",
            "--capability",
            "python",
            "--capability",
            "rust",
            "--tag",
            "gpu",
        ])
        .unwrap();
        assert_eq!(cli.nodes, ["http://a:1", "http://b:2"]);
        let Command::Register(args) = cli.command else {
            panic!("not register")
        };
        let req = register_request(args).unwrap();
        assert_eq!(req.agent_id.as_deref(), Some("a1"));
        let caps: Vec<&str> = req.capabilities.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(caps, ["python", "rust"]);
        assert_eq!(req.tags, ["gpu"]);
    }

    #[test]
    fn usage_errors_are_rejected_by_clap() {
        // --file conflicts with flags; register needs a name and endpoint.
        for args in [
            &["registryctl", "register", "--file", "x.json", "--name", "n"][..],
            &["registryctl", "register", "--name", "n"][..],
            &["registryctl", "status", "a1", "sleeping"][..],
            &["registryctl", "health", "a1", "--metric", "latency"][..],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), i32::from(EXIT_USAGE), "{args:?}");
        }
    }

    #[test]
    fn discover_flags_build_the_request_and_need_a_term() {
        let cli = Cli::try_parse_from([
            "registryctl",
            "discover",
            "--capability",
            "trading",
            "--capability",
            "risk management",
            "--any-capability",
            "fx",
            "--tag",
            "crypto",
            "--status",
            "active",
            "--status",
            "busy",
            "--min-health",
            "0.7",
            "--max-load",
            "0.5",
            "--sort-by",
            "health",
            "--limit",
            "3",
            "--explain",
            "--include-card",
        ])
        .unwrap();
        let Command::Discover(args) = cli.command else {
            panic!("not discover")
        };
        let req = discover_request(args);
        assert_eq!(req.capabilities, ["trading", "risk management"]);
        assert_eq!(req.any_capabilities, ["fx"]);
        assert_eq!(req.tags, ["crypto"]);
        assert_eq!(
            req.status,
            Some(vec!["active".to_string(), "busy".to_string()])
        );
        assert_eq!(
            (req.min_health_score, req.max_load_factor),
            (Some(0.7), Some(0.5))
        );
        assert_eq!(req.sort_by.as_deref(), Some("health"));
        assert_eq!(
            (req.limit, req.explain, req.include_card),
            (Some(3), true, true)
        );
        for args in [
            &["registryctl", "discover"][..],
            &["registryctl", "discover", "--limit", "3"][..],
            &[
                "registryctl",
                "discover",
                "--text",
                "x",
                "--sort-by",
                "cost",
            ][..],
            &[
                "registryctl",
                "select",
                "--capability",
                "x",
                "--strategy",
                "fastest",
            ][..],
            &["registryctl", "watch", "--type", "AGENT_EXPLODED"][..],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), i32::from(EXIT_USAGE), "{args:?}");
        }
    }

    #[test]
    fn watch_and_select_flags_parse() {
        let cli = Cli::try_parse_from([
            "registryctl",
            "watch",
            "--from-revision",
            "12",
            "--type",
            "agent_registered,AGENT_DEREGISTERED",
            "--agent",
            "a1",
            "--capability",
            "trading",
            "--runtime",
            "pod-a",
        ])
        .unwrap();
        let Command::Watch(args) = cli.command else {
            panic!("not watch")
        };
        assert_eq!(args.from_revision, Some(12));
        assert_eq!(
            args.kinds,
            [EventKind::AgentRegistered, EventKind::AgentDeregistered]
        );
        assert_eq!(args.agent.as_deref(), Some("a1"));
        let cli = Cli::try_parse_from(["registryctl", "select", "--capability", "x"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Select {
                strategy: SelectStrategy::LeastLoaded,
                ..
            }
        ));
    }

    #[test]
    fn watch_errors_map_to_exit_codes() {
        assert_eq!(
            report_watch_error(&WatchError::Compacted {
                requested: 3,
                current_revision: 900
            }),
            EXIT_COMPACTED
        );
        assert_eq!(
            report_watch_error(&WatchError::Unavailable {
                attempts: 30,
                last: ClientError::Transport("refused".into())
            }),
            EXIT_UNREACHABLE
        );
        assert_eq!(
            report_watch_error(&WatchError::InvalidOptions("x".into())),
            EXIT_USAGE
        );
    }

    #[test]
    fn client_errors_map_to_exit_codes() {
        use registry_client::types::{ErrorBody, ErrorCode};
        let api = |code: ErrorCode| ClientError::Api {
            status: code.http_status(),
            body: ErrorBody::new(code, "x"),
        };
        assert_eq!(
            report_client_error(&api(ErrorCode::AgentNotFound)),
            EXIT_API
        );
        assert_eq!(
            report_client_error(&ClientError::AllNodesFailed {
                attempts: 2,
                last: Box::new(api(ErrorCode::NoLeader)),
            }),
            EXIT_UNREACHABLE
        );
        assert_eq!(
            report_client_error(&ClientError::Transport("refused".into())),
            EXIT_UNREACHABLE
        );
        assert_eq!(
            report_client_error(&ClientError::InvalidConfig("bad".into())),
            EXIT_USAGE
        );
    }
}
