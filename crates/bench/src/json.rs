//! An insertion-ordered JSON value, so the report's keys come out in the order the
//! benchmark records them (serde_json's map sorts them, and its `preserve_order`
//! feature would change the daemon's own `status --json` through feature unification).

use std::fmt::Write as _;

#[derive(Clone, Debug, PartialEq)]
pub enum J {
    Null,
    Bool(bool),
    Int(i64),
    Num(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Obj),
}

/// A JSON object keeping its keys in insertion order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Obj(Vec<(String, J)>);

impl Obj {
    pub fn new() -> Obj {
        Obj(Vec::new())
    }

    /// Sets `key`: in place if present (like a Python dict), else appended.
    pub fn set(&mut self, key: &str, v: impl Into<J>) {
        let v = v.into();
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = v,
            None => self.0.push((key.to_string(), v)),
        }
    }

    /// Builder form of [`Obj::set`].
    pub fn with(mut self, key: &str, v: impl Into<J>) -> Obj {
        self.set(key, v);
        self
    }

    pub fn get(&self, key: &str) -> Option<&J> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut J> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }

    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = &(String, J)> {
        self.0.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut (String, J)> {
        self.0.iter_mut()
    }

    /// A number field as f64 (None if missing, null or not a number).
    pub fn num(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(J::as_f64)
    }

    /// A string field ("" if missing or not a string).
    pub fn str(&self, key: &str) -> &str {
        match self.get(key) {
            Some(J::Str(s)) => s,
            _ => "",
        }
    }
}

impl J {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            J::Int(i) => Some(*i as f64),
            J::Num(x) => Some(*x),
            _ => None,
        }
    }

    /// Pretty-printed with two-space indentation, in the layout of Python's
    /// `json.dump(indent=2)`.
    pub fn pretty(&self) -> String {
        let mut s = String::new();
        self.write(&mut s, 0);
        s
    }

    fn write(&self, s: &mut String, depth: usize) {
        let pad = |s: &mut String, d: usize| s.push_str(&" ".repeat(2 * d));
        match self {
            J::Null => s.push_str("null"),
            J::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
            J::Int(i) => {
                let _ = write!(s, "{i}");
            }
            J::Num(x) if x.is_finite() => {
                s.push_str(&serde_json::to_string(x).unwrap_or_else(|_| "null".into()))
            }
            J::Num(_) => s.push_str("null"),
            J::Str(t) => s.push_str(&serde_json::Value::from(t.as_str()).to_string()),
            J::Arr(items) if items.is_empty() => s.push_str("[]"),
            J::Arr(items) => {
                s.push_str("[\n");
                for (i, v) in items.iter().enumerate() {
                    pad(s, depth + 1);
                    v.write(s, depth + 1);
                    s.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                pad(s, depth);
                s.push(']');
            }
            J::Obj(o) if o.0.is_empty() => s.push_str("{}"),
            J::Obj(o) => {
                s.push_str("{\n");
                for (i, (k, v)) in o.0.iter().enumerate() {
                    pad(s, depth + 1);
                    s.push_str(&serde_json::Value::from(k.as_str()).to_string());
                    s.push_str(": ");
                    v.write(s, depth + 1);
                    s.push_str(if i + 1 < o.0.len() { ",\n" } else { "\n" });
                }
                pad(s, depth);
                s.push('}');
            }
        }
    }
}

impl From<&str> for J {
    fn from(v: &str) -> J {
        J::Str(v.to_string())
    }
}
impl From<String> for J {
    fn from(v: String) -> J {
        J::Str(v)
    }
}
impl From<f64> for J {
    fn from(v: f64) -> J {
        J::Num(v)
    }
}
impl From<i64> for J {
    fn from(v: i64) -> J {
        J::Int(v)
    }
}
impl From<u64> for J {
    fn from(v: u64) -> J {
        i64::try_from(v).map_or(J::Num(v as f64), J::Int)
    }
}
impl From<u32> for J {
    fn from(v: u32) -> J {
        J::Int(v.into())
    }
}
impl From<Obj> for J {
    fn from(v: Obj) -> J {
        J::Obj(v)
    }
}
impl From<Vec<J>> for J {
    fn from(v: Vec<J>) -> J {
        J::Arr(v)
    }
}
impl<T: Into<J>> From<Option<T>> for J {
    fn from(v: Option<T>) -> J {
        v.map_or(J::Null, Into::into)
    }
}

/// Python's `round(x, n)` for the report's figures.
pub fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_matches_python_indent_2() {
        let o = Obj::new()
            .with("a", 1i64)
            .with("b", Obj::new())
            .with("c", vec![J::from(1.5), J::Null])
            .with("d", Obj::new().with("x", "y\""));
        assert_eq!(
            J::Obj(o).pretty(),
            "{\n  \"a\": 1,\n  \"b\": {},\n  \"c\": [\n    1.5,\n    null\n  ],\n  \"d\": {\n    \"x\": \"y\\\"\"\n  }\n}"
        );
    }

    #[test]
    fn set_keeps_the_position_of_an_existing_key() {
        let mut o = Obj::new()
            .with("status", "not run")
            .with("runs", J::Arr(vec![]));
        o.set("status", "ok");
        o.set("error", "x");
        let keys: Vec<&str> = o.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["status", "runs", "error"]);
        assert_eq!(J::from(3.0).pretty(), "3.0");
    }
}
