//! A printed form: what it says ([`Form`], built by its caller) and where each piece of it goes on
//! the page ([`layout`]: pure arithmetic over the font's advance widths, so that it is tested
//! without opening a PDF). A4 landscape: a claim's lines have many columns.

use crate::DocumentError;
use crate::fonts::{BOLD, Face, REGULAR};

/// A document of labelled fields, tables and paragraphs under a title.
#[derive(Debug, Clone, PartialEq)]
pub struct Form {
    pub title: String,
    /// Right of the title (a claim's status).
    pub badge: String,
    /// At the foot of every page, left of its number.
    pub footer: String,
    pub blocks: Vec<Block>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// A section's name, ruled under.
    Heading(String),
    /// Label and value pairs, four to a row; a long value wraps within its cell.
    Fields(Vec<(String, String)>),
    /// A table; a row wraps within its cells, and a page break repeats the header.
    Table { columns: Vec<Column>, rows: Vec<Vec<String>> },
    /// A labelled text across the page, wrapped (and continued on the next page when long).
    Paragraph { label: String, text: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub header: String,
    /// Its part of the table's width, relative to the other columns'.
    pub share: f32,
    pub align: Align,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

impl Column {
    pub fn new(header: &str, share: f32, align: Align) -> Column {
        Column { header: header.to_string(), share, align }
    }
}

impl Form {
    /// The form as a PDF document.
    pub fn to_pdf(&self) -> Result<Vec<u8>, DocumentError> {
        crate::pdf::render(&self.title, &layout(self))
    }
}

pub(crate) const PAGE_WIDTH: f32 = 842.0;
pub(crate) const PAGE_HEIGHT: f32 = 595.0;
const MARGIN: f32 = 36.0;
const CONTENT_WIDTH: f32 = PAGE_WIDTH - 2.0 * MARGIN;
/// Content ends here; the footer is below.
const BOTTOM: f32 = PAGE_HEIGHT - 44.0;
const FIELDS_PER_ROW: usize = 4;
const CELL_PADDING: f32 = 3.0;

/// One thing drawn on a page; `y` grows downwards from the page's top, a text's `y` is its baseline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    Text { x: f32, y: f32, size: f32, bold: bool, gray: bool, text: String },
    Rule { x1: f32, x2: f32, y: f32, width: f32 },
    Shade { x: f32, y: f32, w: f32, h: f32 },
}

fn face(bold: bool) -> &'static Face {
    if bold { &BOLD } else { &REGULAR }
}

/// Pages of operations, in order.
struct Pages {
    title: String,
    pages: Vec<Vec<Op>>,
    y: f32,
}

impl Pages {
    fn page(&mut self) -> &mut Vec<Op> {
        self.pages.last_mut().expect("a page is always open")
    }

    fn text(&mut self, x: f32, y: f32, size: f32, bold: bool, gray: bool, text: &str) {
        self.page().push(Op::Text { x, y, size, bold, gray, text: text.to_string() });
    }

    /// A rule across the page at the current height.
    fn rule(&mut self, width: f32) {
        let y = self.y;
        self.page().push(Op::Rule { x1: MARGIN, x2: PAGE_WIDTH - MARGIN, y, width });
    }

    /// Makes room for `height` points: a new page when this one has not that much left (and is
    /// not a new page already: what is taller than a page is continued by its caller).
    fn room(&mut self, height: f32) -> bool {
        if self.y + height <= BOTTOM || self.y <= MARGIN + 20.0 {
            return false;
        }
        self.new_page();
        true
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        let title = format!("{} (continued)", self.title);
        self.text(MARGIN, MARGIN + 8.0, 8.0, false, true, &title);
        self.y = MARGIN + 16.0;
    }
}

/// Where every piece of `form` goes, page by page (the footers included).
pub(crate) fn layout(form: &Form) -> Vec<Vec<Op>> {
    let mut p = Pages { title: form.title.clone(), pages: vec![Vec::new()], y: MARGIN };
    let badge_width = BOLD.width(&form.badge, 12.0);
    let title_width = CONTENT_WIDTH - badge_width - 12.0;
    for line in wrap(&BOLD, &form.title, 16.0, title_width) {
        p.y += 18.0;
        p.text(MARGIN, p.y, 16.0, true, false, &line);
    }
    p.text(PAGE_WIDTH - MARGIN - badge_width, MARGIN + 18.0, 12.0, true, false, &form.badge);
    p.y += 7.0;
    p.rule(1.0);
    p.y += 4.0;
    for block in &form.blocks {
        match block {
            Block::Heading(text) => heading(&mut p, text),
            Block::Fields(fields) => fields_block(&mut p, fields),
            Block::Table { columns, rows } => table(&mut p, columns, rows),
            Block::Paragraph { label, text } => paragraph(&mut p, label, text),
        }
    }
    let count = p.pages.len();
    for (i, page) in p.pages.iter_mut().enumerate() {
        let y = PAGE_HEIGHT - 22.0;
        page.push(Op::Text { x: MARGIN, y, size: 7.0, bold: false, gray: true, text: form.footer.clone() });
        let number = format!("Page {} of {count}", i + 1);
        let x = PAGE_WIDTH - MARGIN - REGULAR.width(&number, 7.0);
        page.push(Op::Text { x, y, size: 7.0, bold: false, gray: true, text: number });
    }
    p.pages
}

fn heading(p: &mut Pages, text: &str) {
    p.room(40.0);
    p.y += 22.0;
    p.text(MARGIN, p.y, 10.5, true, false, text);
    p.y += 4.0;
    p.rule(0.5);
    p.y += 2.0;
}

fn fields_block(p: &mut Pages, fields: &[(String, String)]) {
    let cell = CONTENT_WIDTH / FIELDS_PER_ROW as f32;
    for row in fields.chunks(FIELDS_PER_ROW) {
        let values: Vec<Vec<String>> =
            row.iter().map(|(_, value)| wrap(&REGULAR, value, 9.5, cell - 2.0 * CELL_PADDING)).collect();
        let lines = values.iter().map(Vec::len).max().unwrap_or(1);
        let height = 10.0 + 12.0 * lines as f32 + 4.0;
        p.room(height);
        let top = p.y;
        for (i, ((label, _), value)) in row.iter().zip(&values).enumerate() {
            let x = MARGIN + cell * i as f32;
            p.text(x, top + 10.0, 7.0, false, true, label);
            for (l, line) in value.iter().enumerate() {
                p.text(x, top + 22.0 + 12.0 * l as f32, 9.5, false, false, line);
            }
        }
        p.y = top + height;
    }
}

fn paragraph(p: &mut Pages, label: &str, text: &str) {
    p.room(34.0);
    p.y += 10.0;
    p.text(MARGIN, p.y, 7.0, false, true, label);
    for line in wrap(&REGULAR, text, 9.5, CONTENT_WIDTH) {
        p.room(12.0);
        p.y += 12.0;
        p.text(MARGIN, p.y, 9.5, false, false, &line);
    }
    p.y += 4.0;
}

fn table(p: &mut Pages, columns: &[Column], rows: &[Vec<String>]) {
    let total: f32 = columns.iter().map(|c| c.share).sum();
    let widths: Vec<f32> = columns.iter().map(|c| CONTENT_WIDTH * c.share / total).collect();
    let starts: Vec<f32> = widths.iter().scan(MARGIN, |x, w| Some(std::mem::replace(x, *x + w))).collect();
    let cell = |p: &mut Pages, i: usize, y: f32, size: f32, bold: bool, text: &str| {
        let x = match columns[i].align {
            Align::Left => starts[i] + CELL_PADDING,
            Align::Right => starts[i] + widths[i] - CELL_PADDING - face(bold).width(text, size),
        };
        p.text(x, y, size, bold, false, text);
    };
    let header = |p: &mut Pages| {
        let headers: Vec<Vec<String>> =
            columns.iter().zip(&widths).map(|(c, w)| wrap(&BOLD, &c.header, 7.5, w - 2.0 * CELL_PADDING)).collect();
        let lines = headers.iter().map(Vec::len).max().unwrap_or(1);
        let height = 6.0 + 9.0 * lines as f32;
        let y = p.y;
        p.page().push(Op::Shade { x: MARGIN, y, w: CONTENT_WIDTH, h: height });
        for (i, lines) in headers.iter().enumerate() {
            for (l, line) in lines.iter().enumerate() {
                cell(p, i, p.y + 10.0 + 9.0 * l as f32, 7.5, true, line);
            }
        }
        p.y += height;
    };
    p.room(50.0);
    p.y += 6.0;
    header(p);
    for row in rows {
        let cells: Vec<Vec<String>> = widths
            .iter()
            .enumerate()
            .map(|(i, w)| wrap(&REGULAR, row.get(i).map_or("", String::as_str), 8.0, w - 2.0 * CELL_PADDING))
            .collect();
        let lines = cells.iter().map(Vec::len).max().unwrap_or(1);
        if p.room(5.0 + 10.0 * lines as f32) {
            header(p);
        }
        // a row taller than what is left of the page (a long explanation) goes on over the next
        for l in 0..lines {
            if p.y + 15.0 > BOTTOM {
                p.new_page();
                header(p);
            }
            for (i, cell_lines) in cells.iter().enumerate() {
                if let Some(line) = cell_lines.get(l) {
                    cell(p, i, p.y + 10.0, 8.0, false, line);
                }
            }
            p.y += 10.0;
        }
        p.y += 5.0;
        p.rule(0.25);
    }
}

/// `text` in lines no wider than `width` at `size` points: broken at spaces, a word wider than a
/// line broken where it must, the text's own line breaks kept, control characters as spaces.
/// At least one line.
pub(crate) fn wrap(face: &Face, text: &str, size: f32, width: f32) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let clean: String = paragraph.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        let mut line = String::new();
        for word in clean.split_whitespace() {
            let candidate = if line.is_empty() { word.to_string() } else { format!("{line} {word}") };
            if face.width(&candidate, size) <= width {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            // a word alone too wide: as many characters a line as fit
            for c in word.chars() {
                line.push(c);
                if face.width(&line, size) > width && line.chars().count() > 1 {
                    line.pop();
                    lines.push(std::mem::replace(&mut line, c.to_string()));
                }
            }
        }
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(page: &[Op]) -> Vec<&str> {
        page.iter()
            .filter_map(|op| match op {
                Op::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn wrapping_keeps_every_word_within_the_width() {
        let text = "Пацієнт скерований до лікаря загальної практики; the line is long enough to wrap twice at least";
        let lines = wrap(&REGULAR, text, 9.5, 150.0);
        assert!(lines.len() >= 3, "{lines:?}");
        assert!(lines.iter().all(|l| REGULAR.width(l, 9.5) <= 150.0), "{lines:?}");
        assert_eq!(lines.join(" "), text);
        let long = "x".repeat(200);
        let broken = wrap(&REGULAR, &long, 8.0, 60.0);
        assert!(broken.len() > 3 && broken.concat() == long);
        assert_eq!(wrap(&REGULAR, "", 8.0, 60.0), vec![String::new()]);
        assert_eq!(wrap(&REGULAR, "a\tb\nc", 8.0, 600.0), vec!["a b".to_string(), "c".to_string()]);
    }

    fn assert_within_pages(pages: &[Vec<Op>]) {
        for (i, page) in pages.iter().enumerate() {
            for op in page {
                if let Op::Text { y, text, .. } = op {
                    assert!(*y <= PAGE_HEIGHT - 20.0, "page {i}: {text:?} at {y} is off the page");
                    if !text.starts_with("Page ") && *y < PAGE_HEIGHT - 30.0 {
                        assert!(*y <= BOTTOM, "page {i}: {text:?} at {y} runs into the footer");
                    }
                }
            }
        }
    }

    #[test]
    fn a_row_taller_than_a_page_goes_on_over_the_next() {
        let words: Vec<String> = (0..1200).map(|i| format!("слово{i}")).collect();
        let long = words.join(" ");
        let form = Form {
            title: "Claim C-2".into(),
            badge: "ENTERED".into(),
            footer: "uuid".into(),
            blocks: vec![Block::Table {
                columns: vec![Column::new("Code", 1.0, Align::Left), Column::new("Explanation", 1.0, Align::Left)],
                rows: vec![vec!["S1".into(), long.clone()], vec!["S2".into(), "short".into()]],
            }],
        };
        let pages = layout(&form);
        assert!(pages.len() >= 2, "{} pages", pages.len());
        assert_within_pages(&pages);
        let printed: Vec<&str> = pages.iter().flat_map(|p| texts(p)).collect();
        let joined = printed.join(" ");
        assert!(words.iter().all(|w| joined.contains(w.as_str())), "every word of the long cell is printed");
        assert!(printed.contains(&"S2"));
    }

    #[test]
    fn a_long_table_continues_on_new_pages_with_its_header_and_numbered_footers() {
        let rows: Vec<Vec<String>> = (0..120).map(|i| vec![format!("row {i}"), format!("{i}.00")]).collect();
        let form = Form {
            title: "Claim C-1".into(),
            badge: "ENTERED".into(),
            footer: "uuid".into(),
            blocks: vec![
                Block::Heading("Lines".into()),
                Block::Table {
                    columns: vec![Column::new("What", 3.0, Align::Left), Column::new("Amount", 1.0, Align::Right)],
                    rows,
                },
            ],
        };
        let pages = layout(&form);
        assert!(pages.len() >= 3, "{} pages", pages.len());
        for (i, page) in pages.iter().enumerate() {
            let t = texts(page);
            assert!(t.contains(&"Amount"), "page {i} repeats the header");
            assert!(t.contains(&format!("Page {} of {}", i + 1, pages.len()).as_str()));
            for op in page {
                if let Op::Text { y, .. } = op {
                    assert!(*y <= PAGE_HEIGHT - 20.0, "within the page");
                }
            }
        }
        let all: Vec<&str> = pages.iter().flat_map(|p| texts(p)).collect();
        assert!((0..120).all(|i| all.contains(&format!("row {i}").as_str())), "every row is printed");
        assert_within_pages(&pages);
        // amounts are right-aligned: they end at the same x
        let ends: Vec<f32> = pages[0]
            .iter()
            .filter_map(|op| match op {
                Op::Text { x, text, size, bold, .. } if text.ends_with(".00") => {
                    Some(x + face(*bold).width(text, *size))
                }
                _ => None,
            })
            .collect();
        assert!(ends.len() > 10 && ends.iter().all(|e| (e - ends[0]).abs() < 0.01), "{ends:?}");
    }
}
