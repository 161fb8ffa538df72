//! A password that is wiped from memory when dropped and never printed.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

/// A secret string. `Debug` prints `Password(<redacted>)`; there is no
/// `Display`. The buffer is zeroized on drop, and so is every copy made with
/// `clone`.
#[derive(Clone, Default)]
pub struct Password(Zeroizing<String>);

impl Password {
    /// Takes ownership of `value`; the caller's string is moved, not copied.
    pub fn new(value: String) -> Self {
        Password(Zeroizing::new(value))
    }

    /// The secret itself. Keep the borrow short, and never log it.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Password {
    fn from(value: String) -> Self {
        Password::new(value)
    }
}

impl From<&str> for Password {
    fn from(value: &str) -> Self {
        Password::new(value.to_owned())
    }
}

impl PartialEq for Password {
    fn eq(&self, other: &Self) -> bool {
        // Length leaks, content does not: compare every byte.
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Eq for Password {}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Zeroize for Password {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let p = Password::from("hunter2");
        assert_eq!(format!("{p:?}"), "Password(<redacted>)");
        assert!(!format!("{:#?}", Some(&p)).contains("hunter2"));
    }

    #[test]
    fn there_is_no_display() {
        // Method lookup takes the inherent method only when its bound holds
        // and falls back to the trait's otherwise: a compile-time question
        // answered at run time.
        struct Probe<T>(std::marker::PhantomData<T>);
        trait Fallback {
            fn displays(&self) -> bool {
                false
            }
        }
        impl<T> Fallback for Probe<T> {}
        impl<T: fmt::Display> Probe<T> {
            fn displays(&self) -> bool {
                true
            }
        }
        assert!(Probe::<String>(std::marker::PhantomData).displays());
        assert!(!Probe::<Password>(std::marker::PhantomData).displays());
    }

    #[test]
    fn equality_compares_content() {
        assert_eq!(Password::from("a b"), Password::from("a b"));
        assert_ne!(Password::from("a b"), Password::from("a c"));
        assert_ne!(Password::from("a"), Password::from("ab"));
    }
}
