//! Lazily built verbs: a subcommand's flags are made only when clap enters
//! that subcommand (`clap::Command::defer`), not for every command line.
//!
//! Building the whole tree (every verb's flags, `run` alone has ~80) cost
//! each invocation ~0.6 MB of allocations and ~70 page faults more than
//! the pre-engine CLI had, which made short commands like `rm` ~12 % slower
//! (`docs/design.md`). [`Lazy`] wraps a verb's [`Args`], [`LazyGroup`] a
//! group of verbs ([`Subcommand`]); both hand the parsed value through
//! unchanged ([`Lazy::into_inner`], `Deref`).

use std::ops::Deref;

use clap::{ArgMatches, Args, Command, FromArgMatches, Subcommand};

/// A verb's flags, built when the verb is used.
#[derive(Debug, Clone)]
pub struct Lazy<T>(T);

/// A group of verbs (`network`, `pod`, …), built when the group is used.
#[derive(Debug, Clone)]
pub struct LazyGroup<T>(T);

impl<T> Lazy<T> {
    /// The parsed flags.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> LazyGroup<T> {
    /// The parsed verb of the group.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Lazy<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Deref for LazyGroup<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Both wrappers parse exactly as what they wrap.
macro_rules! from_matches {
    ($wrapper:ident) => {
        impl<T: FromArgMatches> FromArgMatches for $wrapper<T> {
            fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
                T::from_arg_matches(matches).map(Self)
            }
            fn from_arg_matches_mut(matches: &mut ArgMatches) -> Result<Self, clap::Error> {
                T::from_arg_matches_mut(matches).map(Self)
            }
            fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
                self.0.update_from_arg_matches(matches)
            }
            fn update_from_arg_matches_mut(
                &mut self,
                matches: &mut ArgMatches,
            ) -> Result<(), clap::Error> {
                self.0.update_from_arg_matches_mut(matches)
            }
        }
    };
}
from_matches!(Lazy);
from_matches!(LazyGroup);

/// Run `build` on `cmd`, keeping the help text the verb already has: the
/// verb's doc comment is set before the deferred part runs, and the wrapped
/// type's own doc comment must not replace it (as it would not without
/// deferral, where the verb's comes last).
fn keeping_about(cmd: Command, build: fn(Command) -> Command) -> Command {
    let Some(about) = cmd.get_about().cloned() else {
        return build(cmd);
    };
    let long_about = cmd.get_long_about().cloned();
    let cmd = build(cmd).about(about);
    match long_about {
        Some(text) => cmd.long_about(text),
        None => cmd.long_about(None::<&str>),
    }
}

impl<T: Args> Args for Lazy<T> {
    fn group_id() -> Option<clap::Id> {
        T::group_id()
    }
    fn augment_args(cmd: Command) -> Command {
        cmd.defer(|cmd| keeping_about(cmd, T::augment_args))
    }
    fn augment_args_for_update(cmd: Command) -> Command {
        cmd.defer(|cmd| keeping_about(cmd, T::augment_args_for_update))
    }
}

impl<T: Subcommand> Subcommand for LazyGroup<T> {
    fn augment_subcommands(cmd: Command) -> Command {
        cmd.defer(|cmd| keeping_about(cmd, T::augment_subcommands))
    }
    fn augment_subcommands_for_update(cmd: Command) -> Command {
        cmd.defer(|cmd| keeping_about(cmd, T::augment_subcommands_for_update))
    }
    fn has_subcommand(name: &str) -> bool {
        T::has_subcommand(name)
    }
}
