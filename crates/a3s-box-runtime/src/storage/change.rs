//! `--change` / `-c` of `commit` and `import`: Dockerfile instructions that
//! edit the new image's config (CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE,
//! LABEL, VOLUME).

use a3s_box_core::{BoxError, Result};
use serde_json::{json, Map, Value};

fn bad_change(change: &str, reason: &str) -> BoxError {
    BoxError::Invalid(format!("invalid --change {change:?}: {reason}"))
}

/// `["a","b"]` (JSON form) or `a b` (shell form, run by `/bin/sh -c`).
fn command_form(change: &str, rest: &str) -> Result<Value> {
    if rest.trim_start().starts_with('[') {
        let v: Vec<String> = serde_json::from_str(rest)
            .map_err(|_| bad_change(change, "not a JSON array of strings"))?;
        return Ok(json!(v));
    }
    Ok(json!(["/bin/sh", "-c", rest]))
}

/// `KEY=VALUE ...` pairs (`ENV`, `LABEL`); quotes around values are removed.
fn pairs(change: &str, rest: &str) -> Result<Vec<(String, String)>> {
    rest.split_whitespace()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.trim_matches('"').to_string())),
            _ => Err(bad_change(change, "use KEY=VALUE")),
        })
        .collect()
}

/// Apply one Dockerfile instruction to an image config's `config` object.
pub fn apply_change(config: &mut Map<String, Value>, change: &str) -> Result<()> {
    let (word, rest) = change
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(|| bad_change(change, "use INSTRUCTION ARGS"))?;
    let rest = rest.trim();
    match word.to_ascii_uppercase().as_str() {
        "CMD" => {
            config.insert("Cmd".into(), command_form(change, rest)?);
        }
        "ENTRYPOINT" => {
            config.insert("Entrypoint".into(), command_form(change, rest)?);
        }
        "WORKDIR" => {
            config.insert("WorkingDir".into(), json!(rest));
        }
        "USER" => {
            config.insert("User".into(), json!(rest));
        }
        "ENV" => {
            let env = config.entry("Env").or_insert_with(|| json!([]));
            let list = env
                .as_array_mut()
                .ok_or_else(|| bad_change(change, "Env is not a list"))?;
            for (k, v) in pairs(change, rest)? {
                list.retain(|e| {
                    e.as_str().and_then(|e| e.split_once('=')).map(|(ek, _)| ek) != Some(&k)
                });
                list.push(json!(format!("{k}={v}")));
            }
        }
        "LABEL" => {
            let labels = config.entry("Labels").or_insert_with(|| json!({}));
            if labels.is_null() {
                *labels = json!({});
            }
            for (k, v) in pairs(change, rest)? {
                labels[&k] = json!(v);
            }
        }
        "EXPOSE" => {
            let ports = config.entry("ExposedPorts").or_insert_with(|| json!({}));
            if ports.is_null() {
                *ports = json!({});
            }
            for port in rest.split_whitespace() {
                let (num, proto) = port.split_once('/').unwrap_or((port, "tcp"));
                if num.parse::<u16>().is_err() || !matches!(proto, "tcp" | "udp" | "sctp") {
                    return Err(bad_change(change, "use PORT[/tcp|udp]"));
                }
                ports[format!("{num}/{proto}")] = json!({});
            }
        }
        "VOLUME" => {
            let volumes = config.entry("Volumes").or_insert_with(|| json!({}));
            if volumes.is_null() {
                *volumes = json!({});
            }
            let paths: Vec<String> = if rest.starts_with('[') {
                serde_json::from_str(rest)
                    .map_err(|_| bad_change(change, "not a JSON array of strings"))?
            } else {
                rest.split_whitespace().map(str::to_string).collect()
            };
            if paths.is_empty() || paths.iter().any(|p| !p.starts_with('/')) {
                return Err(bad_change(change, "use VOLUME /absolute/path ..."));
            }
            for path in paths {
                volumes[path] = json!({});
            }
        }
        _ => {
            return Err(bad_change(
                change,
                "supported: CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL, VOLUME",
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_edit_the_config_like_dockerfile_instructions() {
        let mut c = Map::new();
        for ch in [
            "CMD [\"/bin/app\", \"-v\"]",
            "ENTRYPOINT run me",
            "ENV A=1 B=\"two\"",
            "ENV A=3",
            "WORKDIR /srv",
            "USER 1000:1000",
            "EXPOSE 80 53/udp",
            "LABEL team=infra",
            "VOLUME /data /cache",
            "VOLUME [\"/logs\"]",
        ] {
            apply_change(&mut c, ch).unwrap();
        }
        assert_eq!(c["Cmd"], json!(["/bin/app", "-v"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "run me"]));
        assert_eq!(c["Env"], json!(["B=two", "A=3"]));
        assert_eq!(c["WorkingDir"], "/srv");
        assert_eq!(c["User"], "1000:1000");
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(c["Labels"], json!({"team": "infra"}));
        assert_eq!(
            c["Volumes"],
            json!({"/data": {}, "/cache": {}, "/logs": {}})
        );
        for bad in [
            "RUN x",
            "CMD",
            "EXPOSE http",
            "ENV novalue",
            "CMD [1]",
            "VOLUME data",
        ] {
            assert!(apply_change(&mut c, bad).is_err(), "{bad}");
        }
    }
}
