//! Reading and writing `a{sv}` dictionaries ([`VariantDict`]) with typed values and errors that
//! name the key, and the one rule for strings that cross the bus: D-Bus strings cannot hold a
//! NUL character, and a peer that sends one has its connection dropped by the bus daemon — so
//! every string a unit sends is checked here first, and a bad one fails that request only.

use zbus::OwnedVariant;

use crate::VariantDict;

/// A dictionary value of the wrong type, or a string the bus cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DictError {
    #[error("{key} must be of type {signature}")]
    WrongType {
        key: String,
        signature: &'static str,
    },
    #[error("{key} is required ({signature})")]
    Missing {
        key: String,
        signature: &'static str,
    },
    #[error(transparent)]
    Text(#[from] TextError),
}

/// A string that D-Bus cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} contains a NUL character (at byte {at}), which cannot be passed on")]
pub struct TextError {
    pub field: String,
    pub at: usize,
}

/// Checks that `value` can travel as a D-Bus string (Rust strings are valid UTF-8 already; the
/// one thing left is NUL).
///
/// # Errors
/// [`TextError`] naming `field` and where the NUL is.
pub fn check_text(field: &str, value: &str) -> Result<(), TextError> {
    match value.bytes().position(|b| b == 0) {
        None => Ok(()),
        Some(at) => Err(TextError {
            field: field.to_owned(),
            at,
        }),
    }
}

/// Inserts a string value, checked by [`check_text`].
///
/// # Errors
/// [`TextError`] when `value` holds a NUL.
pub fn put_str(dict: &mut VariantDict, key: &str, value: &str) -> Result<(), TextError> {
    check_text(key, value)?;
    dict.insert(
        key.into(),
        OwnedVariant::from(zbus::Str::from(value.to_owned())),
    );
    Ok(())
}

/// Inserts a string array, every element checked by [`check_text`].
///
/// # Errors
/// [`TextError`] naming the element (`argv[2]`) that holds a NUL.
pub fn put_strv(dict: &mut VariantDict, key: &str, values: &[String]) -> Result<(), TextError> {
    for (i, value) in values.iter().enumerate() {
        check_text(&format!("{key}[{i}]"), value)?;
    }
    if let Ok(value) = OwnedVariant::try_from(zbus::Variant::from(values.to_vec())) {
        dict.insert(key.into(), value);
    }
    Ok(())
}

/// Inserts an unsigned 64-bit value.
pub fn put_u64(dict: &mut VariantDict, key: &str, value: u64) {
    dict.insert(key.into(), OwnedVariant::from(value));
}

/// Inserts a boolean.
pub fn put_bool(dict: &mut VariantDict, key: &str, value: bool) {
    dict.insert(key.into(), OwnedVariant::from(value));
}

fn typed<T: TryFrom<OwnedVariant>>(
    dict: &VariantDict,
    key: &str,
    signature: &'static str,
) -> Result<Option<T>, DictError> {
    let Some(value) = dict.get(key) else {
        return Ok(None);
    };
    let wrong = || DictError::WrongType {
        key: key.to_owned(),
        signature,
    };
    let owned = value.try_clone().map_err(|_| wrong())?;
    T::try_from(owned).map(Some).map_err(|_| wrong())
}

/// A string value, if present.
///
/// # Errors
/// [`DictError::WrongType`] when the value is not `s`.
pub fn get_str(dict: &VariantDict, key: &str) -> Result<Option<String>, DictError> {
    typed(dict, key, "s")
}

/// A non-empty string value that must be present.
///
/// # Errors
/// [`DictError::Missing`] when absent or empty, [`DictError::WrongType`] when not `s`.
pub fn require_str(dict: &VariantDict, key: &str) -> Result<String, DictError> {
    get_str(dict, key)?
        .filter(|v| !v.is_empty())
        .ok_or_else(|| DictError::Missing {
            key: key.to_owned(),
            signature: "s",
        })
}

/// A string array value, if present.
///
/// # Errors
/// [`DictError::WrongType`] when the value is not `as`.
pub fn get_strv(dict: &VariantDict, key: &str) -> Result<Option<Vec<String>>, DictError> {
    typed(dict, key, "as")
}

/// An unsigned 64-bit value, if present.
///
/// # Errors
/// [`DictError::WrongType`] when the value is not `t`.
pub fn get_u64(dict: &VariantDict, key: &str) -> Result<Option<u64>, DictError> {
    typed(dict, key, "t")
}

/// A boolean value, if present.
///
/// # Errors
/// [`DictError::WrongType`] when the value is not `b`.
pub fn get_bool(dict: &VariantDict, key: &str) -> Result<Option<bool>, DictError> {
    typed(dict, key, "b")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_never_enters_a_dictionary() {
        let mut dict = VariantDict::new();
        let err = put_str(&mut dict, "command_line", "ls\0-la").unwrap_err();
        assert_eq!(
            err.to_string(),
            "command_line contains a NUL character (at byte 2), which cannot be passed on"
        );
        let err = put_strv(&mut dict, "argv", &["a".into(), "b\0".into()]).unwrap_err();
        assert_eq!(err.field, "argv[1]");
        assert!(dict.is_empty());
    }

    #[test]
    fn typed_reads_name_the_key() {
        let mut dict = VariantDict::new();
        put_str(&mut dict, "tool", "terminal").unwrap();
        put_u64(&mut dict, "timeout_ms", 5);
        assert_eq!(get_str(&dict, "tool").unwrap().as_deref(), Some("terminal"));
        assert_eq!(
            get_str(&dict, "timeout_ms").unwrap_err().to_string(),
            "timeout_ms must be of type s"
        );
        assert_eq!(
            require_str(&dict, "session").unwrap_err().to_string(),
            "session is required (s)"
        );
        assert_eq!(get_u64(&dict, "timeout_ms").unwrap(), Some(5));
    }
}
