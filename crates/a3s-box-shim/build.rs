//! Link options of this binary: see build/relr.rs.
include!("../../build/relr.rs");
