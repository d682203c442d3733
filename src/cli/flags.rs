//! Flag parsers shared by several subcommands, so each spelling is accepted in one place.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use volsec_core::ownership::ChangePolicy;

/// `--change-policy Always|OnRootMismatch`, spelled as in a pod manifest.
pub fn change_policy() -> impl TypedValueParser<Value = ChangePolicy> {
    PossibleValuesParser::new(ChangePolicy::ALL.map(|p| p.as_str()))
        .map(|s| s.parse().expect("one of the possible values"))
}
