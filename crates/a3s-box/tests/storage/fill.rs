//! New volumes are filled from the image (Docker's copy-up); the writable
//! layer gives deleted files' space back to the host.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Output;

use super::common::{rootfs, TestHome};
use super::ok;

/// A copy of the test root with `/data` holding files of several owners
/// and modes, a directory and an absolute symlink.
fn image_with_data() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", rootfs().display()))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(copied.success());
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("file"), "image\n").unwrap();
    std::fs::write(data.join("sub/deep"), "d\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", data.join("link")).unwrap();
    for (path, (uid, gid), mode) in [
        (data.join("file"), (1234, 5678), 0o640),
        (data.join("sub"), (42, 43), 0o700),
        (data.clone(), (7, 8), 0o750),
    ] {
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    dir
}

/// `run --rm` on `root` with `extra` flags.
fn run_on(b: &TestHome, root: &Path, extra: &[&str], command: &[&str]) -> Output {
    b.cmd()
        .args(["run", "--rm", "--cpus", "1", "--memory", "128m", "--rootfs"])
        .arg(root)
        .args(extra)
        .arg("--")
        .args(command)
        .output()
        .unwrap()
}

#[test]
fn a_new_volume_gets_the_image_content_once_and_keeps_the_box_changes() {
    let b = TestHome::new();
    let image = image_with_data();
    let show = "stat -c '%u:%g %a %n' /data /data/file /data/sub; readlink /data/link; \
                cat /data/file; echo box > /data/file; rm /data/link; true";
    let o = b
        .cmd()
        .args(["create", "--name", "a", "--cpus", "1", "--memory", "128m"])
        .args(["-v", "vol:/data", "--rootfs"])
        .arg(image.path())
        .args(["--", "sh", "-c", show])
        .output()
        .unwrap();
    ok(&o);
    let stats = "7:8 750 /data\n1234:5678 640 /data/file\n42:43 700 /data/sub\n";
    assert_eq!(
        ok(&b.cli(&["start", "-a", "a"])),
        format!("{stats}/etc/passwd\nimage\n")
    );
    let data = b.home.path().join("volumes/vol/_data");
    let m = std::fs::metadata(data.join("file")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1234, 5678, 0o640));
    let m = std::fs::metadata(&data).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (7, 8, 0o750));
    assert_eq!(
        std::fs::read_to_string(data.join("sub/deep")).unwrap(),
        "d\n"
    );

    // A restart finds the volume filled: the box's own changes, not the image's.
    assert_eq!(ok(&b.cli(&["start", "-a", "a"])), format!("{stats}box\n"));
    // So does another box on the same volume.
    let o = run_on(
        &b,
        image.path(),
        &["-v", "vol:/data"],
        &["sh", "-c", "cat /data/file; ls /data"],
    );
    assert_eq!(ok(&o), "box\nfile\nsub\n");
    // An anonymous volume (as an image VOLUME gets) is filled too.
    let o = run_on(
        &b,
        image.path(),
        &["-v", "/data"],
        &["cat", "/data/sub/deep"],
    );
    assert_eq!(ok(&o), "d\n");
}

#[test]
fn a_new_read_only_volume_is_filled_then_sealed_even_against_root() {
    let b = TestHome::new();
    let image = image_with_data();
    // Root in the box lifts the mount's read-only flag, and mounts the share
    // again read-write: the daemon still refuses every change.
    let script = "cat /data/file; touch /data/file 2>/dev/null || echo ro; \
                  mount -o remount,bind,rw /data && echo remounted; \
                  echo x > /data/new || echo refused; rm /data/file || echo refused; \
                  mkdir /m && mount -t virtiofs a3s-fs0 /m && echo mounted; \
                  chmod 777 /m/sub || echo refused; mv /m/file /m/f2 || echo refused";
    let o = run_on(
        &b,
        image.path(),
        &["-v", "rov:/data:ro"],
        &["sh", "-c", script],
    );
    assert_eq!(
        ok(&o),
        "image\nro\nremounted\nrefused\nrefused\nmounted\nrefused\nrefused\n"
    );
    let data = b.home.path().join("volumes/rov/_data");
    let mut names: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["file", "link", "sub"], "filled, nothing else");
    let m = std::fs::metadata(data.join("sub")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o700);
}

#[test]
fn nocopy_and_non_empty_volumes_are_not_filled() {
    let b = TestHome::new();
    let image = image_with_data();
    for flag in [
        [
            "--mount",
            "type=volume,source=nc1,target=/data,volume-nocopy",
        ],
        ["-v", "nc2:/data:nocopy"],
    ] {
        let o = run_on(&b, image.path(), &flag, &["ls", "-A", "/data"]);
        assert_eq!(ok(&o), "", "{flag:?}");
    }
    for name in ["nc1", "nc2"] {
        let dir = b.home.path().join("volumes").join(name).join("_data");
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0, "{name}");
    }
    ok(&b.cli(&["volume", "create", "full"]));
    let data = b.home.path().join("volumes/full/_data");
    std::fs::write(data.join("mine"), "kept\n").unwrap();
    let o = run_on(
        &b,
        image.path(),
        &["-v", "full:/data"],
        &["sh", "-c", "ls -A /data; cat /data/mine"],
    );
    assert_eq!(ok(&o), "mine\nkept\n");
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 1);
}

#[test]
fn deleted_files_give_the_writable_layer_space_back() {
    let b = TestHome::new();
    let o = b
        .cmd()
        .args(["create", "--name", "t", "--cpus", "1", "--memory", "128m", "--rootfs"])
        .arg(rootfs())
        .args([
            "--",
            "sh",
            "-c",
            "if [ -e /big ]; then rm /big; else dd if=/dev/zero of=/big bs=1M count=50 conv=fsync 2>/dev/null; fi; sync",
        ])
        .output()
        .unwrap();
    ok(&o);
    let id = b.inspect("t")["Id"].as_str().unwrap().to_string();
    let layer = b.home.path().join("boxes").join(&id[..12]).join("rw.img");
    let allocated = || std::fs::metadata(&layer).unwrap().blocks() * 512;
    let fresh = allocated();
    ok(&b.cli(&["start", "-a", "t"]));
    let written = allocated();
    assert!(
        written >= fresh + (45 << 20),
        "50 MiB written: {fresh} -> {written} bytes"
    );
    ok(&b.cli(&["start", "-a", "t"]));
    let deleted = allocated();
    assert!(
        deleted <= fresh + (5 << 20),
        "50 MiB deleted: {fresh} -> {written} -> {deleted} bytes"
    );
    eprintln!("layer allocated: fresh {fresh}, written {written}, deleted {deleted} bytes");
}

#[test]
fn an_image_volume_gets_an_anonymous_volume_filled_from_the_image() {
    let b = TestHome::new();
    let image = image_with_data();
    let tar = b.home.path().join("root.tar");
    let made = std::process::Command::new("tar")
        .arg("-C")
        .arg(image.path())
        .args(["-cf"])
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(made.success());
    ok(&b.cli(&[
        "import",
        "-c",
        "VOLUME /data",
        tar.to_str().unwrap(),
        "vol:1",
    ]));
    let o = b
        .cmd()
        .args([
            "create", "--name", "v", "--cpus", "1", "--memory", "128m", "vol:1",
        ])
        .args(["sh", "-c", "cat /data/file; echo box >> /data/file"])
        .output()
        .unwrap();
    ok(&o);
    assert_eq!(ok(&b.cli(&["start", "-a", "v"])), "image\n");
    assert_eq!(ok(&b.cli(&["start", "-a", "v"])), "image\nbox\n");
    let names = ok(&b.cli(&["volume", "ls", "-q"]));
    let anonymous: Vec<&str> = names.lines().collect();
    assert_eq!(anonymous.len(), 1, "{names}");
    let data = b
        .home
        .path()
        .join("volumes")
        .join(anonymous[0])
        .join("_data");
    assert_eq!(
        std::fs::read_to_string(data.join("file")).unwrap(),
        "image\nbox\nbox\n"
    );
    ok(&b.cli(&["rm", "-v", "v"]));
    assert_eq!(ok(&b.cli(&["volume", "ls", "-q"])), "");
}

#[test]
fn two_boxes_starting_on_one_new_volume_both_start() {
    let b = TestHome::new();
    let image = image_with_data();
    let many = image.path().join("data/many");
    std::fs::create_dir(&many).unwrap();
    for i in 0..300 {
        std::fs::write(many.join(format!("f{i}")), format!("{i}\n")).unwrap();
    }
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let mut c = b.cmd();
            c.args([
                "run",
                "--rm",
                "--cpus",
                "1",
                "--memory",
                "128m",
                "-v",
                "race:/data",
            ])
            .arg("--rootfs")
            .arg(image.path())
            .args(["--", "sh", "-c", "ls /data/many | wc -l"]);
            std::thread::spawn(move || c.output().unwrap())
        })
        .collect();
    for run in runs {
        let o = run.join().unwrap();
        let count: usize = ok(&o).trim().parse().unwrap();
        assert!(
            count > 0,
            "each box sees the volume filled, at least in part"
        );
    }
    let data = b.home.path().join("volumes/race/_data/many");
    assert_eq!(std::fs::read_dir(data).unwrap().count(), 300);
}
