//! Typed, located reads from one TOML table, collecting errors as it goes.
//!
//! Each read names the key it asks for, so once a section has been read the
//! keys nobody asked for are exactly the unknown ones, and the asked-for keys
//! are the candidates for "did you mean".

use std::cell::RefCell;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::error::{ConfigError, ErrorKind};
use crate::position::LineIndex;
use crate::suggest::nearest;

/// A value with the byte range it came from.
#[derive(Debug, Clone)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Its byte range in the file.
    pub span: Range<usize>,
}

/// The file being read and the errors found in it so far.
pub struct Context<'t> {
    file: &'t Path,
    index: LineIndex<'t>,
    errors: RefCell<Vec<ConfigError>>,
}

impl<'t> Context<'t> {
    /// Starts reading `text`, the contents of `file`.
    pub fn new(file: &'t Path, text: &'t str) -> Self {
        Self {
            file,
            index: LineIndex::new(text),
            errors: RefCell::new(Vec::new()),
        }
    }

    /// Records an error at the start of `span`.
    pub fn error(&self, span: &Range<usize>, kind: ErrorKind) {
        let at = self.index.position(span.start);
        self.errors.borrow_mut().push(ConfigError {
            file: self.file.to_path_buf(),
            line: at.line,
            column: at.column,
            kind,
        });
    }

    /// Records an error at a line and column already worked out.
    pub fn error_at(&self, line: usize, column: usize, kind: ErrorKind) {
        self.errors.borrow_mut().push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            kind,
        });
    }

    /// 1-based line and column of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let at = self.index.position(offset);
        (at.line, at.column)
    }

    /// The errors recorded so far, in file order.
    pub fn into_errors(self) -> Vec<ConfigError> {
        let mut errors = self.errors.into_inner();
        errors.sort_by_key(|e| (e.line, e.column));
        errors
    }

    /// True when nothing has gone wrong yet.
    pub fn is_clean(&self) -> bool {
        self.errors.borrow().is_empty()
    }
}

/// One table being read; call [`Section::finish`] after the last read.
pub struct Section<'c, 'a, 'i> {
    ctx: &'c Context<'c>,
    table: &'a DeTable<'i>,
    span: Range<usize>,
    name: String,
    known: Vec<&'static str>,
    free_form: bool,
}

impl<'c, 'a, 'i> Section<'c, 'a, 'i> {
    /// Reads `table`, called `name` in messages (e.g. `[service]`).
    pub fn new(
        ctx: &'c Context<'c>,
        table: &'a DeTable<'i>,
        span: Range<usize>,
        name: String,
    ) -> Self {
        Self {
            ctx,
            table,
            span,
            name,
            known: Vec::new(),
            free_form: false,
        }
    }

    /// The section's name as used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the section starts.
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// The context errors go to.
    pub fn ctx(&self) -> &'c Context<'c> {
        self.ctx
    }

    /// The raw value of `key`, marking the key as known.
    pub fn value(&mut self, key: &'static str) -> Option<&'a Spanned<DeValue<'i>>> {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
        self.table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| v)
    }

    fn wrong_type(&self, key: &str, expected: &'static str, found: &Spanned<DeValue<'_>>) {
        self.ctx.error(
            &found.span(),
            ErrorKind::WrongType {
                field: key.to_owned(),
                section: self.name.clone(),
                expected,
                found: found.get_ref().type_str(),
            },
        );
    }

    /// Records that `key` must be present.
    pub fn missing(&self, key: &'static str) {
        self.ctx.error(
            &self.span,
            ErrorKind::Missing {
                field: key,
                section: self.name.clone(),
            },
        );
    }

    /// A string value.
    pub fn string(&mut self, key: &'static str) -> Option<Located<String>> {
        let value = self.value(key)?;
        match value.get_ref() {
            DeValue::String(s) => Some(Located {
                value: s.to_string(),
                span: value.span(),
            }),
            _ => {
                self.wrong_type(key, "a string", value);
                None
            }
        }
    }

    /// A boolean value; absent means `false`.
    pub fn flag(&mut self, key: &'static str) -> bool {
        let Some(value) = self.value(key) else {
            return false;
        };
        match value.get_ref() {
            DeValue::Boolean(b) => *b,
            _ => {
                self.wrong_type(key, "true or false", value);
                false
            }
        }
    }

    /// A non-negative integer value.
    pub fn unsigned(&mut self, key: &'static str) -> Option<Located<u64>> {
        let value = self.value(key)?;
        let parsed = match value.get_ref() {
            DeValue::Integer(i) => u64::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => {
                self.wrong_type(key, "a non-negative integer", value);
                return None;
            }
        };
        match parsed {
            Some(n) => Some(Located {
                value: n,
                span: value.span(),
            }),
            None => {
                self.out_of_range(
                    key,
                    &value.span(),
                    "must be a non-negative integer that fits in 64 bits",
                );
                None
            }
        }
    }

    /// A duration, `default` when absent: an integer of milliseconds, or a
    /// time span (`"5s"`, `"1m30s"`, see [`crate::timespan`]). Zero is
    /// refused unless `zero_allowed`.
    pub fn millis(&mut self, key: &'static str, default: Duration, zero_allowed: bool) -> Duration {
        let spanned = match self.value(key).map(|v| (v.get_ref(), v.span())) {
            Some((DeValue::String(text), span)) => match crate::timespan::parse(text) {
                Ok(duration) => Some(Located {
                    value: duration,
                    span,
                }),
                Err(error) => {
                    self.out_of_range(key, &span, &error.to_string());
                    None
                }
            },
            Some((DeValue::Integer(_), _)) => self.unsigned(key).map(|n| Located {
                value: Duration::from_millis(n.value),
                span: n.span,
            }),
            Some(_) => {
                if let Some(value) = self.value(key) {
                    self.wrong_type(
                        key,
                        "milliseconds (an integer) or a time span like \"5s\"",
                        value,
                    );
                }
                None
            }
            None => None,
        };
        match spanned {
            Some(d) if d.value.is_zero() && !zero_allowed => {
                self.zero(key, &d.span);
                default
            }
            Some(d) => d.value,
            None => default,
        }
    }

    /// A positive count, `default` when absent.
    pub fn count(&mut self, key: &'static str, default: u64) -> u64 {
        match self.unsigned(key) {
            Some(n) if n.value == 0 => {
                self.zero(key, &n.span);
                default
            }
            Some(n) => n.value,
            None => default,
        }
    }

    /// Records that `key` must not be zero.
    pub fn zero(&self, key: &'static str, span: &Range<usize>) {
        self.ctx.error(
            span,
            ErrorKind::Zero {
                field: key,
                section: self.name.clone(),
            },
        );
    }

    /// Records that `key` is outside its range.
    pub fn out_of_range(&self, key: &'static str, span: &Range<usize>, message: &str) {
        self.ctx.error(
            span,
            ErrorKind::OutOfRange {
                field: key,
                section: self.name.clone(),
                message: message.to_owned(),
            },
        );
    }

    /// An array of strings; absent means empty.
    pub fn strings(&mut self, key: &'static str) -> Vec<Located<String>> {
        let Some(value) = self.value(key) else {
            return Vec::new();
        };
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(key, "an array of strings", value);
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push(Located {
                    value: s.to_string(),
                    span: item.span(),
                }),
                _ => self.wrong_type(key, "an array of strings", item),
            }
        }
        out
    }

    /// A sub-table, e.g. `[service.env]`.
    pub fn table(&mut self, key: &'static str) -> Option<Section<'c, 'a, 'i>> {
        let value = self.value(key)?;
        match value.get_ref() {
            DeValue::Table(table) => Some(Section::new(
                self.ctx,
                table,
                value.span(),
                self.child_name(key),
            )),
            _ => {
                self.wrong_type(key, "a table", value);
                None
            }
        }
    }

    /// An array of tables, e.g. `[[actions]]`; absent means empty.
    pub fn tables(&mut self, key: &'static str) -> Vec<Section<'c, 'a, 'i>> {
        let Some(value) = self.value(key) else {
            return Vec::new();
        };
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(key, "an array of tables", value);
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (n, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::Table(table) => out.push(Section::new(
                    self.ctx,
                    table,
                    item.span(),
                    format!("[[{key}]] #{}", n + 1),
                )),
                _ => self.wrong_type(key, "an array of tables", item),
            }
        }
        out
    }

    /// Every entry of a free-form table whose values are scalars (strings,
    /// integers, booleans), each as a string.
    pub fn scalar_entries(&mut self) -> Vec<(Located<String>, String)> {
        let mut out = Vec::with_capacity(self.table.len());
        for (key, value) in self.table.iter() {
            let text = match value.get_ref() {
                DeValue::String(s) => s.to_string(),
                DeValue::Integer(i) => i.to_string(),
                DeValue::Boolean(b) => b.to_string(),
                _ => {
                    self.wrong_type(key.get_ref(), "a string, integer or boolean", value);
                    continue;
                }
            };
            out.push((
                Located {
                    value: key.get_ref().to_string(),
                    span: key.span(),
                },
                text,
            ));
        }
        // Every key of a free-form table is known.
        self.free_form = true;
        out
    }

    /// Reports every key nobody read as unknown, with the nearest known key.
    pub fn finish(self) {
        if self.free_form {
            return;
        }
        for (key, _) in self.table.iter() {
            let key_text = key.get_ref().as_ref();
            if self.known.contains(&key_text) {
                continue;
            }
            self.ctx.error(
                &key.span(),
                ErrorKind::UnknownKey {
                    key: key_text.to_owned(),
                    section: self.name.clone(),
                    suggestion: nearest(key_text, &self.known).map(str::to_owned),
                    known: self.known.clone(),
                },
            );
        }
    }

    fn child_name(&self, key: &str) -> String {
        match self
            .name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
        {
            Some(parent) if !parent.starts_with('[') => format!("[{parent}.{key}]"),
            _ => format!("[{key}]"),
        }
    }
}
