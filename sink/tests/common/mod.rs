//! Finding the servers `scripts/services up` starts, for integration tests.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The endpoint of a server from `var`, else `default` (`http://host:port`
/// or `host:port`). A server that doesn't accept connections fails the test
/// with what to run, unless `SECLAKE_SKIP_SERVICES` is set outside CI: then
/// `None`, and the test returns without checking anything. In CI it never
/// passes unrun.
pub fn service(name: &str, var: &str, default: &str) -> Option<String> {
    let endpoint = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let reachable = host
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    if reachable {
        return Some(endpoint);
    }
    let msg =
        format!("{name} is not reachable at {endpoint} ({var}): run `scripts/services up {name}`");
    let skip = std::env::var_os("SECLAKE_SKIP_SERVICES").is_some();
    assert!(skip && std::env::var_os("CI").is_none(), "{msg}");
    eprintln!("SKIPPED (SECLAKE_SKIP_SERVICES): {msg}");
    None
}
