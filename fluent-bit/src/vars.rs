//! `${NAME}` expansion as Fluent Bit does it in both formats: the file's own variables,
//! then the environment; an undefined name is an error here (Fluent Bit would silently
//! substitute an empty string, which is never what a shipped file means).

use crate::error::FluentBitError;

/// Expands every `${NAME}` in `value` through `lookup`.
///
/// # Errors
/// [`FluentBitError::UndefinedVariable`] for a name `lookup` does not know,
/// [`FluentBitError::UnterminatedVariable`] for `${` without `}`.
///
/// # Examples
/// ```
/// let env = |n: &str| (n == "CLUSTER_NAME").then(|| "demo".to_string());
/// let group = fluent_bit_config::vars::expand("/aws/eks/${CLUSTER_NAME}/cluster", &env)?;
/// assert_eq!(group, "/aws/eks/demo/cluster");
/// # Ok::<(), fluent_bit_config::FluentBitError>(())
/// ```
pub fn expand(
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, FluentBitError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| FluentBitError::UnterminatedVariable {
                value: value.to_string(),
            })?;
        let name = &after[..end];
        let resolved = lookup(name).ok_or_else(|| FluentBitError::UndefinedVariable {
            name: name.to_string(),
        })?;
        out.push_str(&resolved);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The names referenced by `${NAME}` in `value`, in order.
#[must_use]
pub fn references(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        out.push(&after[..end]);
        rest = &after[end + 1..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("1".into()),
            "NODE" => Some("ip-10-0-0-1".into()),
            _ => None,
        }
    }

    #[test]
    fn references_are_replaced_in_place() {
        assert_eq!(
            expand("x-${A}-${NODE}.y", &env).unwrap(),
            "x-1-ip-10-0-0-1.y"
        );
        assert_eq!(expand("plain", &env).unwrap(), "plain");
        assert_eq!(references("a${A}b${NODE}"), ["A", "NODE"]);
    }

    #[test]
    fn undefined_and_unterminated_references_are_errors() {
        assert!(matches!(
            expand("${MISSING}", &env),
            Err(FluentBitError::UndefinedVariable { name }) if name == "MISSING"
        ));
        assert!(matches!(
            expand("${A", &env),
            Err(FluentBitError::UnterminatedVariable { .. })
        ));
    }
}
