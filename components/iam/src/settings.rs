//! IAM's numeric settings from `[components.iam.config]`.

use weft_sdk::config;

/// The positive number set as `key`, or `default` when it is unset, not a
/// number, or not above zero.
pub fn positive<T>(key: &str, default: T) -> T
where
    T: std::str::FromStr + PartialOrd + Default,
{
    config::get(key)
        .and_then(|text| text.trim().parse::<T>().ok())
        .filter(|n| *n > T::default())
        .unwrap_or(default)
}
