//! A parser's `Time_Format` (strptime plus Fluent Bit's `%L` for fractional seconds)
//! as a strftime pattern for a Rust time library, so a test can parse a line's time the
//! way Fluent Bit will.

use crate::error::FluentBitError;

/// Directives passed through unchanged: the common strptime set.
const PASSTHROUGH: &[char] = &[
    'Y', 'm', 'd', 'H', 'M', 'S', 'y', 'b', 'B', 'a', 'A', 'j', 'e', 'I', 'p', 'z', 'Z', 's', 'T',
    'D', 'F', '%',
];

/// Converts a Fluent Bit `Time_Format` to strftime: `%L` (fractional seconds of any
/// length) becomes `%f`; other common directives pass through.
///
/// # Errors
/// [`FluentBitError::UnsupportedTimeDirective`] for a directive outside that set, or a
/// trailing `%`.
///
/// # Examples
/// ```
/// let f = fluent_bit_config::time_format::to_strftime("%Y-%m-%dT%H:%M:%S.%LZ")?;
/// assert_eq!(f, "%Y-%m-%dT%H:%M:%S.%fZ");
/// # Ok::<(), fluent_bit_config::FluentBitError>(())
/// ```
pub fn to_strftime(format: &str) -> Result<String, FluentBitError> {
    let mut out = String::with_capacity(format.len());
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let unsupported = |directive| FluentBitError::UnsupportedTimeDirective {
            format: format.to_string(),
            directive,
        };
        match chars.next() {
            Some('L') => out.push_str("%f"),
            Some(d) if PASSTHROUGH.contains(&d) => {
                out.push('%');
                out.push(d);
            }
            Some(d) => return Err(unsupported(d)),
            None => return Err(unsupported('%')),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractional_seconds_become_strftime_f() {
        assert_eq!(
            to_strftime("%d/%b/%Y:%H:%M:%S %z").unwrap(),
            "%d/%b/%Y:%H:%M:%S %z"
        );
        assert_eq!(to_strftime("%s.%L").unwrap(), "%s.%f");
        assert_eq!(to_strftime("100%%").unwrap(), "100%%");
    }

    #[test]
    fn unknown_or_dangling_directives_are_errors() {
        assert!(matches!(
            to_strftime("%Q"),
            Err(FluentBitError::UnsupportedTimeDirective { directive: 'Q', .. })
        ));
        assert!(to_strftime("%Y%").is_err());
    }
}
