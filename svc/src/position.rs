//! Byte offsets to human line and column numbers.

/// A 1-based line and column in a text file; the column counts characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column number in characters, starting at 1.
    pub column: usize,
}

/// Maps byte offsets in one text to [`Position`]s.
pub struct LineIndex<'t> {
    text: &'t str,
    /// Byte offset where each line starts.
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    /// Indexes `text` once so each lookup is a binary search.
    pub fn new(text: &'t str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        Self { text, starts }
    }

    /// The position of byte `offset`; offsets past the end map to the end.
    pub fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let line = match self.starts.binary_search(&offset) {
            Ok(line) => line,
            Err(next) => next.saturating_sub(1),
        };
        let start = self.starts.get(line).copied().unwrap_or(0);
        let column = self
            .text
            .get(start..offset)
            .map_or(0, |prefix| prefix.chars().count());
        Position {
            line: line + 1,
            column: column + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_one_based_line_and_column() {
        let index = LineIndex::new("ab\ncd\n\né x");
        assert_eq!(index.position(0), Position { line: 1, column: 1 });
        assert_eq!(index.position(1), Position { line: 1, column: 2 });
        assert_eq!(index.position(3), Position { line: 2, column: 1 });
        assert_eq!(index.position(6), Position { line: 3, column: 1 });
        // 'é' is two bytes but one column.
        assert_eq!(index.position(10), Position { line: 4, column: 3 });
        assert_eq!(index.position(999), Position { line: 4, column: 4 });
    }
}
