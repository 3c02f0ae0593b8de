//! The embedded fonts: DejaVu Sans and DejaVu Sans Bold (the `dejavu` crate carries the files of
//! DejaVu 2.37, its last release). One family that covers Latin, Greek and Cyrillic, with
//! Armenian, Georgian and Hebrew: the scripts of the schemes careledger serves. A character it
//! lacks (CJK, Devanagari, ...) prints as the font's empty box; README says so.

use std::sync::LazyLock;

use krilla::text::Font;
use skrifa::instance::{LocationRef, Size};
use skrifa::{FontRef, MetadataProvider};

/// A font face: krilla's handle to draw with and the file's metrics to measure with.
pub(crate) struct Face {
    bytes: &'static [u8],
    pub font: Font,
}

impl Face {
    fn load(bytes: &'static [u8]) -> Face {
        Face { bytes, font: Font::new(bytes.into(), 0).expect("DejaVu is a font krilla reads") }
    }

    /// The advance width of `text` at `size` points (kerning aside: what a line needs at most).
    pub fn width(&self, text: &str, size: f32) -> f32 {
        let font = FontRef::new(self.bytes).expect("DejaVu is a font skrifa reads");
        let charmap = font.charmap();
        let metrics = font.glyph_metrics(Size::new(size), LocationRef::default());
        text.chars().map(|c| charmap.map(c).and_then(|g| metrics.advance_width(g)).unwrap_or(size * 0.6)).sum()
    }
}

pub(crate) static REGULAR: LazyLock<Face> = LazyLock::new(|| Face::load(dejavu::sans::regular()));
pub(crate) static BOLD: LazyLock<Face> = LazyLock::new(|| Face::load(dejavu::sans::bold()));
