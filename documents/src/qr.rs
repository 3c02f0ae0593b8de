//! A QR code as a PNG image: `fast_qr` encodes (a tenth of `qrcode`'s time here, most of which
//! went on choosing the mask: a million codes are an order), its modules are drawn 8 pixels square
//! with the standard quiet zone of 4 modules into a 1-bit grayscale PNG by `png` (a 9-digit CHFID:
//! 232 × 232 pixels, ~400 bytes). No image crate: the drawing is one loop, the format is png's.

use fast_qr::{ECL, QRBuilder};

use crate::DocumentError;

const QUIET_ZONE: usize = 4;
/// Pixels a module: 8, so that a module is one byte of a 1-bit row.
const SCALE: usize = 8;

pub(crate) fn png(text: &str) -> Result<Vec<u8>, DocumentError> {
    let code = QRBuilder::new(text.as_bytes()).ecl(ECL::M).build().map_err(|e| DocumentError::Qr(format!("{e:?}")))?;
    let modules = code.size;
    let colors = &code.data[..modules * modules];
    let side = (modules + 2 * QUIET_ZONE) * SCALE;
    // 1 bit a pixel, a set bit white; a module is SCALE = 8 pixels wide, so one byte of a row
    let row_bytes = side / 8;
    let mut pixels = Vec::with_capacity(row_bytes * side);
    let white = vec![0xFFu8; row_bytes];
    for _ in 0..QUIET_ZONE * SCALE {
        pixels.extend_from_slice(&white);
    }
    let mut row = white.clone();
    for modules_row in colors.chunks(modules) {
        for (x, color) in modules_row.iter().enumerate() {
            row[QUIET_ZONE + x] = if color.value() { 0x00 } else { 0xFF };
        }
        for _ in 0..SCALE {
            pixels.extend_from_slice(&row);
        }
    }
    for _ in 0..QUIET_ZONE * SCALE {
        pixels.extend_from_slice(&white);
    }
    let mut out = Vec::with_capacity(512);
    let mut encoder = png::Encoder::new(&mut out, side as u32, side as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    let mut writer = encoder.write_header().map_err(|e| DocumentError::Qr(e.to_string()))?;
    writer.write_image_data(&pixels).map_err(|e| DocumentError::Qr(e.to_string()))?;
    writer.finish().map_err(|e| DocumentError::Qr(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_image_holds_the_code_s_modules_in_its_quiet_zone() {
        let image = super::png("123456782").unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(&image));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        // version 1: 21 modules and 4 each side, 8 pixels a module
        assert_eq!((info.width, info.height), (232, 232));
        let pixel = |x: usize, y: usize| buf[y * info.line_size + x / 8] & (0x80 >> (x % 8)) == 0;
        assert!(!pixel(0, 0) && !pixel(31, 31), "the quiet zone is white");
        assert!(pixel(32, 32) && pixel(32 + 6 * 8, 32), "a finder pattern's dark corner");
        assert!(image.len() < 1024, "{} bytes", image.len());
    }
}
