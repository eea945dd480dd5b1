//! The benchmark tables: fixed-width columns, one space apart.

use std::fmt::{Display, Write as _};

/// How a column pads its cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A column: its width and alignment.
pub type Column = (usize, Align);

/// A table being written: rows padded to the columns, and lines of free text.
#[derive(Debug)]
pub struct Table {
    columns: Vec<Column>,
    out: String,
}

impl Table {
    pub fn new(columns: &[Column]) -> Table {
        Table {
            columns: columns.to_vec(),
            out: String::new(),
        }
    }

    /// A line of free text.
    pub fn line(&mut self, text: impl Display) {
        let _ = writeln!(self.out, "{text}");
    }

    /// A row: each cell padded to its column (a cell wider than its column is not cut).
    pub fn row<T: Display>(&mut self, cells: impl IntoIterator<Item = T>) {
        self.cells(cells);
        self.out.push('\n');
    }

    /// The first cells of a row, then `tail` in place of the rest.
    pub fn row_then<T: Display>(&mut self, cells: impl IntoIterator<Item = T>, tail: impl Display) {
        self.cells(cells);
        let _ = writeln!(self.out, " {tail}");
    }

    fn cells<T: Display>(&mut self, cells: impl IntoIterator<Item = T>) {
        for (i, (cell, &(w, align))) in cells.into_iter().zip(&self.columns).enumerate() {
            if i > 0 {
                self.out.push(' ');
            }
            let _ = match align {
                Align::Left => write!(self.out, "{cell:<w$}"),
                Align::Right => write!(self.out, "{cell:>w$}"),
            };
        }
    }

    pub fn into_string(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_cells_to_their_columns() {
        let mut t = Table::new(&[(4, Align::Left), (3, Align::Right), (2, Align::Right)]);
        t.line("title");
        t.row(["a", "b", "c"]);
        t.row_then(["xyzzy"], "failed: why");
        t.row(["a", "", ""]);
        assert_eq!(
            t.into_string(),
            "title\na      b  c\nxyzzy failed: why\na          \n"
        );
    }
}
