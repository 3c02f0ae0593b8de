//! The documents careledger prints, written with maintained crates and no hand-made file formats:
//!
//! - [`form`]: a form (title, labelled fields, tables, paragraphs) laid out on A4 pages as a PDF by
//!   `krilla`, in DejaVu Sans embedded and subset into the file, so that the text of every script
//!   the font covers (Latin, Greek, Cyrillic, Armenian, Georgian, Hebrew among them) prints and can
//!   be copied and searched (`pdftotext` reads it back);
//! - [`printer_order`]: the card printer's order (seed insuree-code-management, "insuree-qrcode"):
//!   an XLSX list of CHFIDs and image file names (`rust_xlsxwriter`) and a ZIP of one QR code PNG
//!   per CHFID (`fast_qr`, `png`, and a ZIP stream of its own, [`zip_stream`] says why), both
//!   written row by row to any `std::io::Write`, so that an order of a million codes streams
//!   instead of being held.
//!
//! Pure: no HTTP, no database, no clock. What a document says is its caller's; this crate decides
//! only how it looks.

pub mod form;
pub mod printer_order;

mod fonts;
mod pdf;
mod qr;
mod zip_stream;

pub use form::{Align, Block, Column, Form};

/// A document could not be written: the writer failed (the client went away, the disk is full),
/// or a library refused its input.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("writing the document: {0}")]
    Io(#[from] std::io::Error),
    #[error("PDF: {0}")]
    Pdf(String),
    #[error("XLSX: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
    #[error("QR code: {0}")]
    Qr(String),
}
