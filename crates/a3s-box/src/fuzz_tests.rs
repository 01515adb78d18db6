#[cfg(test)]
mod explore {
    use clap::Parser;
    #[test]
    fn explore() {
        for argv in [
            "a3s-box run --rootfs / --gpus all -- true",
            "a3s-box run --rootfs / -- -x",
            "a3s-box run --rootfs / -x",
            "a3s-box run --rootfs / ls -la --rm",
            "a3s-box run alpine --rm -x",
            "a3s-box run --gpus all alpine",
            "a3s-box run -- alpine -x",
            "a3s-box run --rootfs / -- ls -- -x",
        ] {
            let r = crate::cli::Cli::try_parse_from(argv.split(' '));
            match r {
                Ok(cli) => match cli.command {
                    crate::cli::Command::Run(a) => println!("{argv}: {:?}", a.args),
                    _ => {}
                },
                Err(e) => println!("{argv}: ERR {e}"),
            }
        }
    }
}
