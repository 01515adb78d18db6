//! `cp`: copy files between a running box and the host, by Docker's rules.

use std::path::Path;

use anyhow::{bail, Result};

use crate::cli::CpArgs;

/// One side of a copy.
#[derive(Debug, PartialEq, Eq)]
enum Side<'a> {
    /// `BOX:PATH`.
    Box(&'a str, &'a str),
    /// A host path; `-` is a tar stream on stdin or stdout.
    Host(&'a str),
}

/// `BOX:PATH` when the part before the first `:` is a box name (no `/`);
/// anything starting with `/` or `.` is a host path, as in Docker.
fn side(arg: &str) -> Side<'_> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return Side::Host(arg);
    }
    match arg.split_once(':') {
        Some((name, path)) if !name.is_empty() && !name.contains('/') => Side::Box(name, path),
        _ => Side::Host(arg),
    }
}

/// A path in the box: relative paths start at `/`, as Docker resolves them
/// against the box's root.
fn in_box(path: &str) -> String {
    match path.starts_with('/') {
        true => path.to_string(),
        false => format!("/{path}"),
    }
}

/// `cp SRC DST`.
pub async fn cp(args: CpArgs) -> Result<u8> {
    let engine = super::engine()?;
    match (side(&args.src), side(&args.dst)) {
        (Side::Box(name, src), Side::Host("-")) => {
            let out = Box::new(tokio::io::stdout());
            engine.copy_out_tar(name, &in_box(src), out).await?;
        }
        (Side::Box(name, src), Side::Host(dst)) => {
            engine.copy_out(name, &in_box(src), Path::new(dst)).await?;
        }
        (Side::Host("-"), Side::Box(name, dst)) => {
            let input = Box::new(tokio::io::stdin());
            engine.copy_in_tar(name, input, &in_box(dst)).await?;
        }
        (Side::Host(src), Side::Box(name, dst)) => {
            engine.copy_in(name, Path::new(src), &in_box(dst)).await?;
        }
        (Side::Box(..), Side::Box(..)) => {
            bail!("copying between boxes is not supported: copy to the host first")
        }
        (Side::Host(_), Side::Host(_)) => {
            bail!("one of SRC and DST must be BOX:PATH (use ./name for a host path with a colon)")
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_follow_dockers_rules() {
        assert_eq!(side("web:/etc/hosts"), Side::Box("web", "/etc/hosts"));
        assert_eq!(side("web:tmp"), Side::Box("web", "tmp"));
        assert_eq!(side("./a:b"), Side::Host("./a:b"));
        assert_eq!(side("/x:y"), Side::Host("/x:y"));
        assert_eq!(side("dir/a:b"), Side::Host("dir/a:b"));
        assert_eq!(side("-"), Side::Host("-"));
        assert_eq!(side(":x"), Side::Host(":x"));
        assert_eq!(in_box("tmp/x"), "/tmp/x");
        assert_eq!(in_box("/tmp"), "/tmp");
    }
}
