//! A container's ulimits (`--ulimit nofile=1024:2048`): parsed when the
//! container is created, set by each of its processes before it execs.

/// One resource limit of a container's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// The `RLIMIT_*` resource.
    pub resource: libc::__rlimit_resource_t,
    /// Soft limit (`RLIM_INFINITY`: unlimited).
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// The resource Docker's ulimit `name` stands for.
fn resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "as" => libc::RLIMIT_AS,
        "core" => libc::RLIMIT_CORE,
        "cpu" => libc::RLIMIT_CPU,
        "data" => libc::RLIMIT_DATA,
        "fsize" => libc::RLIMIT_FSIZE,
        "locks" => libc::RLIMIT_LOCKS,
        "memlock" => libc::RLIMIT_MEMLOCK,
        "msgqueue" => libc::RLIMIT_MSGQUEUE,
        "nice" => libc::RLIMIT_NICE,
        "nofile" => libc::RLIMIT_NOFILE,
        "nproc" => libc::RLIMIT_NPROC,
        "rss" => libc::RLIMIT_RSS,
        "rtprio" => libc::RLIMIT_RTPRIO,
        "rttime" => libc::RLIMIT_RTTIME,
        "sigpending" => libc::RLIMIT_SIGPENDING,
        "stack" => libc::RLIMIT_STACK,
        _ => return None,
    })
}

/// A limit value: a count, or `-1`/`unlimited`.
fn value(text: &str) -> Option<u64> {
    match text {
        "-1" | "unlimited" => Some(libc::RLIM_INFINITY),
        n => n.parse().ok(),
    }
}

/// Parse Docker's `NAME=SOFT[:HARD]` (HARD defaults to SOFT).
pub fn parse(spec: &str) -> Result<Rlimit, String> {
    let bad = |why: &str| format!("invalid ulimit {spec:?}: {why}");
    let (name, limits) = spec
        .split_once('=')
        .ok_or_else(|| bad("expected NAME=SOFT[:HARD]"))?;
    let resource = resource(name).ok_or_else(|| bad("unknown name"))?;
    let (soft, hard) = match limits.split_once(':') {
        Some((soft, hard)) => (soft, hard),
        None => (limits, limits),
    };
    let soft = value(soft).ok_or_else(|| bad("the soft limit is not a number"))?;
    let hard = value(hard).ok_or_else(|| bad("the hard limit is not a number"))?;
    if soft > hard {
        return Err(bad("the soft limit is above the hard limit"));
    }
    Ok(Rlimit {
        resource,
        soft,
        hard,
    })
}

/// Parse every ulimit of a container.
pub fn parse_all(specs: &[String]) -> Result<Vec<Rlimit>, String> {
    specs.iter().map(|s| parse(s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_syntax_parses() {
        assert_eq!(
            parse("nofile=1024:2048").unwrap(),
            Rlimit {
                resource: libc::RLIMIT_NOFILE,
                soft: 1024,
                hard: 2048
            }
        );
        assert_eq!(
            parse("nproc=64").unwrap(),
            Rlimit {
                resource: libc::RLIMIT_NPROC,
                soft: 64,
                hard: 64
            }
        );
        let core = parse("core=-1").unwrap();
        assert_eq!(
            (core.soft, core.hard),
            (libc::RLIM_INFINITY, libc::RLIM_INFINITY)
        );
        let stack = parse("stack=8192:unlimited").unwrap();
        assert_eq!((stack.soft, stack.hard), (8192, libc::RLIM_INFINITY));
    }

    #[test]
    fn bad_ulimits_are_refused() {
        for bad in [
            "nofile",
            "nope=1",
            "nofile=a",
            "nofile=1:b",
            "nofile=20:10",
            "=1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_all(&["nofile=1".into(), "x=1".into()]).unwrap_err(),
            parse("x=1").unwrap_err()
        );
    }
}
