//! The card printer's order (seed insuree-code-management, "insuree-qrcode": "CHF makes orders to
//! generate cards when they need ... Excel: CHFID, filesName"): an XLSX list with a CHFID and the
//! name of its QR code image per row, and a ZIP of those images, named as the list names them.
//!
//! Both are written code by code to a `Write` that need not seek: the XLSX's rows go through a
//! temporary file (rust_xlsxwriter's constant-memory mode) and the ZIP's directory through another
//! ([`crate::zip_stream`]), so an order of a million codes holds a page of codes at a time, not
//! the order. The images are drawn by every core, a slice of codes each, and written in order.

use std::io::{self, Write};

use rust_xlsxwriter::{Format, Workbook};

use crate::DocumentError;

/// Rows a sheet holds below its header: Excel's limit is 1,048,576 rows, so an order past
/// this goes on in a second sheet (Order 2), and so on.
pub const ROWS_PER_SHEET: u32 = 1_000_000;

/// The name of a code's QR image in the ZIP and in the XLSX's second column: the code, where any
/// character a file system or the printer's software might take otherwise is an underscore.
pub fn file_name(code: &str) -> String {
    let safe: String = code.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    format!("{safe}.png")
}

/// The XLSX list: a header (CHFID, File name) then one row per code, in the order given.
/// Returns how many codes it lists.
pub fn write_xlsx<W, I>(codes: I, out: W) -> Result<u64, DocumentError>
where
    W: Write + Send,
    I: IntoIterator<Item = io::Result<String>>,
{
    let mut workbook = Workbook::new();
    let mut written = 0u64;
    let mut row = 0u32;
    for code in codes {
        let code = code?;
        if written == 0 || row > ROWS_PER_SHEET {
            add_sheet(&mut workbook, written / u64::from(ROWS_PER_SHEET) + 1)?;
            row = 1;
        }
        let sheet = workbook.worksheets_mut().last_mut().expect("a sheet was added");
        sheet.write_string(row, 0, &code)?;
        sheet.write_string(row, 1, file_name(&code))?;
        row += 1;
        written += 1;
    }
    if written == 0 {
        add_sheet(&mut workbook, 1)?;
    }
    workbook.save_to_writer(out)?;
    Ok(written)
}

/// Sheet `number` of the list (Order, Order 2, ...) with its header row.
fn add_sheet(workbook: &mut Workbook, number: u64) -> Result<(), DocumentError> {
    let sheet = workbook.add_worksheet_with_constant_memory()?;
    sheet.set_name(if number == 1 { "Order".to_string() } else { format!("Order {number}") })?;
    sheet.set_column_width(0, 16)?;
    sheet.set_column_width(1, 20)?;
    let bold = Format::new().set_bold();
    sheet.write_string_with_format(0, 0, "CHFID", &bold)?;
    sheet.write_string_with_format(0, 1, "File name", &bold)?;
    Ok(())
}

/// Codes whose images are drawn together, a slice to each core, before they are written in order.
const IMAGES_AT_ONCE: usize = 1024;

/// The ZIP of QR code images, one PNG per code encoding the code, named by [`file_name`].
/// Stored, not deflated: a PNG is compressed already. Returns how many images it holds.
pub fn write_qr_zip<W, I>(codes: I, out: W) -> Result<u64, DocumentError>
where
    W: Write,
    I: IntoIterator<Item = io::Result<String>>,
{
    let mut zip = crate::zip_stream::StoredZip::new(out)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut written = 0u64;
    let mut codes = codes.into_iter();
    loop {
        let batch = codes.by_ref().take(IMAGES_AT_ONCE).collect::<io::Result<Vec<String>>>()?;
        if batch.is_empty() {
            break;
        }
        let slice = batch.len().div_ceil(cores);
        let images: Vec<Result<Vec<u8>, DocumentError>> = std::thread::scope(|scope| {
            let drawing: Vec<_> = batch
                .chunks(slice)
                .map(|part| scope.spawn(move || part.iter().map(|code| crate::qr::png(code)).collect::<Vec<_>>()))
                .collect();
            drawing.into_iter().flat_map(|t| t.join().expect("drawing a QR code does not panic")).collect()
        });
        let images = images.into_iter().collect::<Result<Vec<_>, _>>()?;
        for (code, image) in batch.iter().zip(&images) {
            zip.add(&file_name(code), image)?;
        }
        written += batch.len() as u64;
    }
    zip.finish()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Read};

    use super::*;

    fn codes(n: u32) -> impl Iterator<Item = io::Result<String>> {
        (0..n).map(|i| Ok(format!("{:09}", 100_000_000 + i)))
    }

    #[test]
    fn the_zip_names_each_image_as_the_list_does() {
        let mut out = Vec::new();
        assert_eq!(write_qr_zip(codes(3), &mut out).unwrap(), 3);
        let mut zip = zip::ZipArchive::new(Cursor::new(out)).unwrap();
        assert_eq!(zip.len(), 3);
        let mut first = Vec::new();
        zip.by_name("100000000.png").unwrap().read_to_end(&mut first).unwrap();
        assert_eq!(&first[1..4], b"PNG");
        assert_eq!(file_name("AB/12 3"), "AB_12_3.png");
    }

    #[test]
    fn an_error_while_reading_codes_stops_the_order() {
        let failing = codes(2).chain(std::iter::once(Err(io::Error::other("the database went away"))));
        assert!(write_qr_zip(failing, &mut Vec::new()).is_err());
        let failing = codes(2).chain(std::iter::once(Err(io::Error::other("the database went away"))));
        assert!(write_xlsx(failing, Vec::new()).is_err());
    }

    #[test]
    fn the_xlsx_is_a_zip_of_sheets_with_every_code() {
        let mut out = Vec::new();
        assert_eq!(write_xlsx(codes(5), &mut out).unwrap(), 5);
        let mut zip = zip::ZipArchive::new(Cursor::new(out)).unwrap();
        let mut sheet = String::new();
        zip.by_name("xl/worksheets/sheet1.xml").unwrap().read_to_string(&mut sheet).unwrap();
        assert!(sheet.contains("100000004") && sheet.contains("100000004.png"), "{sheet}");
        let mut empty = Vec::new();
        assert_eq!(write_xlsx(codes(0), &mut empty).unwrap(), 0);
        assert!(zip::ZipArchive::new(Cursor::new(empty)).is_ok());
    }
}
