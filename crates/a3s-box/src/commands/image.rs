//! The image verbs (`pull`, `images`, `rmi`, `tag`, `image inspect`, `history`,
//! `image prune`, `login`, `logout`) and [`resolve_for_run`], which `run` calls.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Read};
use std::time::SystemTime;

use a3s_box_core::time::parse_rfc3339;
use a3s_box_runtime::image::registry::Credentials;
use a3s_box_runtime::image::Reference;
use a3s_box_runtime::manager::{human_size, short_name, ImageManager, ImageSummary, Removed};
use anyhow::{bail, Context, Result};

use super::EXIT_BOX_ERROR;
use crate::cli::Format;
use crate::cli_image::{
    HistoryArgs, ImageArgs, ImageCommand, ImageSubcommand, ImagesArgs, InspectArgs, LoadArgs,
    LoginArgs, LogoutArgs, PruneArgs, PullArgs, PushArgs, RmiArgs, SaveArgs, TagArgs,
};

/// Hex characters of an image id in tables (Docker's short id).
const SHORT_ID: usize = 12;
/// Characters of `CREATED BY` shown by `history` without `--no-trunc`.
const CREATED_BY_WIDTH: usize = 45;

/// Run one image verb.
pub fn dispatch(command: ImageCommand) -> Result<u8> {
    match command {
        ImageCommand::Pull(a) => pull(a),
        ImageCommand::Images(a) => images(a),
        ImageCommand::Rmi(a) => rmi(a),
        ImageCommand::Tag(a) => tag(a),
        ImageCommand::ImageInspect(a) => inspect(a),
        ImageCommand::History(a) => history(a),
        ImageCommand::Save(a) => save(a),
        ImageCommand::Load(a) => load(a),
        ImageCommand::Push(a) => push(a),
        ImageCommand::Login(a) => login(a),
        ImageCommand::Logout(a) => logout(a),
        ImageCommand::Image(ImageArgs { command }) => match command {
            ImageSubcommand::Inspect(a) => inspect(a),
            ImageSubcommand::Prune(a) => prune(a),
            ImageSubcommand::Ls(a) => images(a),
            ImageSubcommand::Rm(a) => rmi(a),
            ImageSubcommand::Pull(a) => pull(a),
            ImageSubcommand::Tag(a) => tag(a),
            ImageSubcommand::History(a) => history(a),
            ImageSubcommand::Save(a) => save(a),
            ImageSubcommand::Load(a) => load(a),
            ImageSubcommand::Push(a) => push(a),
        },
    }
}

fn manager() -> Result<ImageManager> {
    Ok(ImageManager::new(&super::config()?)?)
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> Result<T> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f))
}

fn pull(args: PullArgs) -> Result<u8> {
    let m = manager()?;
    let summary = block_on(m.pull(&args.reference, args.platform.as_deref(), !args.quiet))??;
    if !args.quiet {
        println!("Digest: {}", summary.digest);
    }
    println!("{}", summary.reference);
    Ok(0)
}

fn save(args: SaveArgs) -> Result<u8> {
    let m = manager()?;
    let format = args.format.parse()?;
    let Some(path) = args.output else {
        if std::io::stdout().is_terminal() {
            bail!("refusing to write an archive to a terminal: use -o FILE or redirect stdout");
        }
        m.save(&args.images, format, std::io::stdout().lock())?;
        return Ok(0);
    };
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    if let Err(e) = m.save(&args.images, format, std::io::BufWriter::new(file)) {
        let _ = std::fs::remove_file(&path);
        return Err(e.into());
    }
    Ok(0)
}

fn load(args: LoadArgs) -> Result<u8> {
    let m = manager()?;
    let input: Box<dyn Read + Send> = match &args.input {
        Some(path) => Box::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        ),
        None => Box::new(std::io::stdin()),
    };
    let loaded = block_on(m.load(input))??;
    if !args.quiet {
        for image in loaded {
            if image.names.is_empty() {
                println!("Loaded image ID: {}", image.id);
            }
            for name in image.names {
                println!("Loaded image: {}", short_name(&name));
            }
        }
    }
    Ok(0)
}

fn push(args: PushArgs) -> Result<u8> {
    let m = manager()?;
    let pushed = block_on(m.push(&args.image, args.destination.as_deref()))??;
    if args.quiet {
        println!("{}", pushed.reference);
    } else {
        println!(
            "{}: digest: {} ({} blobs uploaded, {} already present)",
            pushed.reference, pushed.digest, pushed.uploaded, pushed.skipped
        );
    }
    Ok(0)
}

fn short_id(summary: &ImageSummary, no_trunc: bool) -> String {
    if no_trunc {
        summary.id.to_string()
    } else {
        summary.id.hex()[..SHORT_ID].to_owned()
    }
}

/// `docker.io/library/alpine:3` → (`alpine`, `3`); a digest-only name has tag `<none>`.
fn repo_and_tag(reference: &str) -> (String, String) {
    match reference.parse::<Reference>() {
        Ok(r) => (
            short_name(&r.name()),
            r.tag().unwrap_or("<none>").to_owned(),
        ),
        Err(_) => (reference.to_owned(), "<none>".to_owned()),
    }
}

fn images(args: ImagesArgs) -> Result<u8> {
    let list = manager()?.list()?;
    if args.quiet {
        let mut seen = BTreeSet::new();
        for s in &list {
            if seen.insert(s.id.clone()) {
                println!("{}", short_id(s, args.no_trunc));
            }
        }
        return Ok(0);
    }
    if args.format == Format::Json {
        let rows: Vec<_> = list
            .iter()
            .map(|s| {
                let (repo, tag) = repo_and_tag(&s.reference);
                serde_json::json!({
                    "Repository": repo,
                    "Tag": tag,
                    "Digest": s.digest.to_string(),
                    "ID": s.id.to_string(),
                    "CreatedAt": s.created,
                    "Size": s.size,
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(0);
    }
    let digest_col = |d: &str| {
        if args.digests {
            format!("{d:<72}  ")
        } else {
            String::new()
        }
    };
    println!(
        "{:<40}  {:<12}  {}{:<12}  {:<24}  SIZE",
        "REPOSITORY",
        "TAG",
        digest_col("DIGEST"),
        "IMAGE ID",
        "CREATED"
    );
    for s in &list {
        let (repo, tag) = repo_and_tag(&s.reference);
        println!(
            "{repo:<40}  {tag:<12}  {}{:<12}  {:<24}  {}",
            digest_col(&s.digest.to_string()),
            short_id(s, args.no_trunc),
            ago(s.created.as_deref()),
            human_size(s.size)
        );
    }
    Ok(0)
}

/// Apply `op` to every key; report each failure on one line; 125 if any failed.
fn each(keys: &[String], mut op: impl FnMut(&str) -> Result<()>) -> Result<u8> {
    let mut failed = false;
    for key in keys {
        if let Err(e) = op(key) {
            eprintln!("a3s-box: {e:#}");
            failed = true;
        }
    }
    Ok(if failed { EXIT_BOX_ERROR } else { 0 })
}

fn rmi(args: RmiArgs) -> Result<u8> {
    let m = manager()?;
    each(&args.images, |key| {
        for event in m.remove(key, args.force)? {
            match event {
                Removed::Untagged(name) => println!("Untagged: {}", short_name(&name)),
                Removed::Deleted(digest) => println!("Deleted: {digest}"),
            }
        }
        Ok(())
    })
}

fn tag(args: TagArgs) -> Result<u8> {
    manager()?.tag(&args.source, &args.target)?;
    Ok(0)
}

fn inspect(args: InspectArgs) -> Result<u8> {
    let m = manager()?;
    let mut out = Vec::new();
    let code = each(&args.images, |key| {
        out.push(m.inspect(key)?);
        Ok(())
    })?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(code)
}

fn history(args: HistoryArgs) -> Result<u8> {
    let m = manager()?;
    let steps = m.history(&args.image)?;
    if args.format == Format::Json {
        println!("{}", serde_json::to_string(&steps)?);
        return Ok(0);
    }
    let id = m.inspect(&args.image)?["Id"]
        .as_str()
        .and_then(|s| s.strip_prefix("sha256:"))
        .map_or_else(String::new, |h| h[..SHORT_ID.min(h.len())].to_owned());
    println!(
        "{:<12}  {:<24}  {:<45}  {:<10}  COMMENT",
        "IMAGE", "CREATED", "CREATED BY", "SIZE"
    );
    for (i, step) in steps.iter().enumerate() {
        let image = if i == 0 { id.as_str() } else { "<missing>" };
        let mut by = step.created_by.replace('\n', " ");
        if !args.no_trunc && by.chars().count() > CREATED_BY_WIDTH {
            by = by.chars().take(CREATED_BY_WIDTH - 3).collect::<String>() + "...";
        }
        println!(
            "{image:<12}  {:<24}  {by:<45}  {:<10}  {}",
            ago(step.created.as_deref()),
            human_size(step.size),
            step.comment
        );
    }
    Ok(0)
}

fn prune(_args: PruneArgs) -> Result<u8> {
    let report = manager()?.prune()?;
    println!("Deleted blobs: {}", report.blobs);
    println!("Deleted unpacked images: {}", report.rootfs_dirs);
    println!("Total reclaimed space: {}", human_size(report.bytes));
    Ok(0)
}

fn login(args: LoginArgs) -> Result<u8> {
    let Some(username) = args.username else {
        bail!("login needs a user name: -u USER");
    };
    let password = match (args.password, args.password_stdin) {
        (Some(p), _) => p,
        (None, true) => {
            let mut p = String::new();
            std::io::stdin().read_to_string(&mut p)?;
            p.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, false) => bail!("login needs a password: -p PASSWORD or --password-stdin"),
    };
    if password.is_empty() {
        bail!("login needs a non-empty password");
    }
    let creds = Credentials { username, password };
    let m = manager()?;
    block_on(m.login(&args.registry, &creds))??;
    println!("Login Succeeded");
    Ok(0)
}

fn logout(args: LogoutArgs) -> Result<u8> {
    if manager()?.logout(&args.registry)? {
        println!("Removing login credentials for {}", args.registry);
    } else {
        println!("Not logged in to {}", args.registry);
    }
    Ok(0)
}

/// "3 seconds ago", "2 days ago", as Docker prints ages.
fn ago(since: Option<&str>) -> String {
    let Some(t) = since.and_then(parse_rfc3339) else {
        return "N/A".into();
    };
    let secs = SystemTime::now()
        .duration_since(t)
        .map_or(0, |d| d.as_secs());
    let text = match secs {
        s if s < 60 => "Less than a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 172_800 => format!("{} hours", s / 3600),
        s if s < 1_209_600 => format!("{} days", s / 86_400),
        s if s < 5_184_000 => format!("{} weeks", s / 604_800),
        s if s < 63_072_000 => format!("{} months", s / 2_592_000),
        s => format!("{} years", s / 31_536_000),
    };
    format!("{text} ago")
}
