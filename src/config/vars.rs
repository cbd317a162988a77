//! `${VAR}` expansion: references are expanded after parsing, value by value, so an environment
//! value can never change the YAML structure. `$${` stands for a literal `${`.

use crate::vocab::Secret;

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

/// Splits `text` into literal text and `${NAME}` references. `$${` stands for a literal `${`;
/// any other `$` is literal.
pub(crate) fn split_vars(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        let after = &rest[at + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            pieces.push(Piece::Text(&rest[..at]));
            pieces.push(Piece::Text("${"));
            rest = escaped;
        } else if let Some(body) = after.strip_prefix('{') {
            pieces.push(Piece::Text(&rest[..at]));
            let Some(end) = body.find('}') else {
                return Err("`${` has no closing `}` (write `$${` for a literal `${`)".to_string());
            };
            let name = &body[..end];
            if !is_var_name(name) {
                return Err(format!(
                    "`${{{name}}}` is not a variable reference: names are letters, digits and `_`, \
                     not starting with a digit (write `$${{` for a literal `${{`)"
                ));
            }
            pieces.push(Piece::Var(name));
            rest = &body[end + 1..];
        } else {
            pieces.push(Piece::Text(&rest[..at + 1]));
            rest = after;
        }
    }
    pieces.push(Piece::Text(rest));
    pieces.retain(|p| *p != Piece::Text(""));
    Ok(pieces)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Expands `${VAR}` references in a secret in place, for config sections that other modules
/// own (notification channels). On failure returns one message per problem, naming variables,
/// never values.
pub fn expand_secret(
    secret: &mut Secret,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), Vec<String>> {
    *secret = Secret::new(expand(secret.expose(), env)?);
    Ok(())
}

/// Expands every reference; on failure returns one message per problem (each unset variable
/// is named). Messages name variables, never their values.
pub(crate) fn expand(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<String>> {
    let pieces = split_vars(text).map_err(|e| vec![e])?;
    let mut out = String::new();
    let mut missing = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(name) => match env(name) {
                Some(value) => out.push_str(&value),
                None => missing.push(format!("environment variable {name} is not set")),
            },
        }
    }
    if missing.is_empty() { Ok(out) } else { Err(missing) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::env_of;

    #[test]
    fn env_vars_expand_whole_or_in_part_and_escape() {
        assert_eq!(expand("${X}", &env_of(&[("X", "v")])), Ok("v".to_string()));
        assert_eq!(
            expand("Bearer-${X}-${Y}!", &env_of(&[("X", "a"), ("Y", "b")])),
            Ok("Bearer-a-b!".to_string())
        );
        assert_eq!(expand("$${X} costs $5", &env_of(&[])), Ok("${X} costs $5".to_string()));
        assert_eq!(expand("$$${X}", &env_of(&[("X", "v")])), Ok("$${X}".to_string()));
        assert_eq!(
            expand("${A}${B}", &env_of(&[])),
            Err(vec![
                "environment variable A is not set".to_string(),
                "environment variable B is not set".to_string()
            ])
        );
        assert!(expand("${unclosed", &env_of(&[])).is_err());
        assert!(expand("${1X}", &env_of(&[])).is_err());
        // A value is inserted as text, never re-expanded or re-parsed.
        assert_eq!(expand("${X}", &env_of(&[("X", "${Y}")])), Ok("${Y}".to_string()));
    }
}
