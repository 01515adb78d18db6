//! `pull`, `login` and `push` through the real binary against Debian's docker-registry
//! configured with `auth: token`: every request goes 401 → token realm → Bearer retry,
//! with a test token server (token_registry/token_server.py) as the realm.

#![allow(clippy::unwrap_used)]

mod common;
mod image_home;
mod registry;
mod token_registry;

use image_home::Images;
use token_registry::{TokenRegistry, PASS, SERVICE, USER};

/// Token requests logged since `from`.
fn requests(reg: &TokenRegistry, from: usize) -> Vec<serde_json::Value> {
    reg.token_log().split_off(from)
}

/// Whether `log` holds a token request by `user` (None: anonymous) that asked for
/// `scope` and was granted exactly `granted` on the scope's repository.
fn saw(log: &[serde_json::Value], user: Option<&str>, scope: &str, granted: &[&str]) -> bool {
    let repo = scope.split(':').nth(1).unwrap();
    log.iter().any(|r| {
        r["path"] == "/token"
            && r["user"] == serde_json::json!(user)
            && r["query"]["service"][0] == SERVICE
            && r["query"]["scope"]
                .as_array()
                .is_some_and(|s| s.contains(&scope.into()))
            && r["granted"].as_array().is_some_and(|g| {
                g.iter()
                    .any(|a| a["name"] == repo && a["actions"] == serde_json::json!(granted))
            })
    })
}

#[test]
fn pull_login_push_through_a_token_auth_registry() {
    let reg = TokenRegistry::start();
    reg.push_fixture("layers", "public/app:1");
    reg.push_fixture("layers", "private/app:1");
    let b = Images::new();
    let public = format!("{}/public/app:1", reg.addr);
    let private = format!("{}/private/app:1", reg.addr);
    let copy = format!("{}/private/copy:1", reg.addr);

    // Anonymous pull of a public repository: a pull-only token, no credentials.
    let mark = reg.token_log().len();
    assert_eq!(b.ok(&["pull", "-q", &public]).trim(), public);
    let log = requests(&reg, mark);
    assert!(
        saw(&log, None, "repository:public/app:pull", &["pull"]),
        "{log:#?}"
    );
    assert_eq!(
        b.repo_digest(&public),
        reg.inspect("public/app:1")["Digest"]
    );

    // Anonymous pull of a private one: the token server grants nothing, the
    // registry refuses the token, and the user is told to log in.
    let mark = reg.token_log().len();
    let err = b.fails(&["pull", "-q", &private]);
    assert!(err.contains("unauthorized"), "{err}");
    assert!(err.contains("a3s-box login"), "{err}");
    let log = requests(&reg, mark);
    assert!(
        saw(&log, None, "repository:private/app:pull", &[]),
        "{log:#?}"
    );

    // Login checks the credentials at the realm (Docker's `account=` request).
    let err = b.fails(&["login", "-u", USER, "-p", "wrong", &reg.addr]);
    assert!(err.contains("incorrect username or password"), "{err}");
    let mark = reg.token_log().len();
    let out = b.ok(&["login", "-u", USER, "-p", PASS, &reg.addr]);
    assert!(out.contains("Login Succeeded"), "{out}");
    let log = requests(&reg, mark);
    assert!(
        log.iter()
            .any(|r| r["user"] == USER && r["query"]["account"][0] == USER),
        "{log:#?}"
    );

    // With credentials, the token carries pull on the private repository.
    let mark = reg.token_log().len();
    assert_eq!(b.ok(&["pull", "-q", &private]).trim(), private);
    let log = requests(&reg, mark);
    assert!(
        saw(&log, Some(USER), "repository:private/app:pull", &["pull"]),
        "{log:#?}"
    );
    let digest = b.repo_digest(&private);
    assert_eq!(digest, reg.inspect("private/app:1")["Digest"]);

    // Push to a new private repository: a pull,push token, and the registry ends up
    // with the very same manifest.
    let mark = reg.token_log().len();
    assert_eq!(b.ok(&["push", "-q", &private, &copy]).trim(), copy);
    let log = requests(&reg, mark);
    assert!(
        saw(
            &log,
            Some(USER),
            "repository:private/copy:pull,push",
            &["pull", "push"]
        ),
        "{log:#?}"
    );
    assert_eq!(reg.inspect("private/copy:1")["Digest"], digest.as_str());
    // Pushing again uploads nothing new.
    let out = b.ok(&["push", &private, &copy]);
    assert!(
        out.contains(&digest) && out.contains("(0 blobs uploaded"),
        "{out}"
    );

    // Logged out, the push token grants nothing and the push is refused.
    b.ok(&["logout", &reg.addr]);
    let mark = reg.token_log().len();
    let err = b.fails(&[
        "push",
        "-q",
        &private,
        &format!("{}/private/other:1", reg.addr),
    ]);
    assert!(err.contains("unauthorized"), "{err}");
    let log = requests(&reg, mark);
    assert!(
        saw(&log, None, "repository:private/other:pull,push", &[]),
        "{log:#?}"
    );
}
