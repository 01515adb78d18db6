//! guest-init's built-in helpers: programs it runs inside a box (as
//! `ProcessSpec { builtin: true, executable: NAME, .. }`) so that `cp`, `top`
//! and `stats` work in any image, with or without a shell or `tar`.

/// `tar-create PATH`: a tar of PATH on stdout, entries named from its basename.
pub const TAR_CREATE: &str = "tar-create";
/// `tar-extract DIR`: extract the tar on stdin under DIR (which must exist).
pub const TAR_EXTRACT: &str = "tar-extract";
/// `ps`: the box's processes as `ps -ef` shows them.
pub const PS: &str = "ps";
/// `stats`: `{"mem_total_bytes":N,"mem_available_bytes":N,"pids":N}`.
pub const STATS: &str = "stats";
/// `stat PATH`: `{"kind":K,"target_kind":K}` (missing|file|dir|symlink|other).
pub const STAT: &str = "stat";
/// `layer-diff`: the box's changes to its image, one `A|C|D /path` line each
/// (Docker's `diff`), read from the overlay's upper layer.
pub const LAYER_DIFF: &str = "layer-diff";
/// `layer-tar`: the box's changes as an OCI layer tar (whiteouts as `.wh.`).
pub const LAYER_TAR: &str = "layer-tar";
/// `root-tar`: a tar of the box's whole filesystem, without its mounts.
pub const ROOT_TAR: &str = "root-tar";
