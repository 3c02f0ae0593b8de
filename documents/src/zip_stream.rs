//! A ZIP archive of stored (uncompressed) entries written as a stream in constant memory.
//!
//! Written here, not with the `zip` crate, for one reason: a ZIP's directory comes at its end and
//! names every entry, and `zip` keeps each entry's record in memory until then (~390 bytes an
//! entry: 390 MB for the million QR codes of a large printer's order, measured). Here each
//! directory record goes to a temporary file as its entry is written, and is copied behind the
//! last one. The format is the few records of APPNOTE 6.3.10 a stored entry needs (local file
//! header, central directory header, end of central directory, and its ZIP64 forms when there are
//! 65,535 entries or more, or 4 GiB); the tests read what it writes with `zip` and Python's
//! `zipfile`, two independent readers, and check the ZIP64 fields of an archive past 4 GiB (which
//! no test writes whole) byte by byte.

use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_DIRECTORY: u32 = 0x0605_4b50;
const ZIP64_END_OF_DIRECTORY: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
/// Version 2.0 (stored entries); 4.5 where a ZIP64 field is used.
const VERSION: u16 = 20;
const VERSION_ZIP64: u16 = 45;
/// 1980-01-01 00:00, MS-DOS format: the order's images have no time of their own worth telling.
const DOS_TIME: u16 = 0;
const DOS_DATE: u16 = (1 << 5) | 1;

/// A writer that counts the bytes it passed on: the entries' offsets.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub(crate) struct StoredZip<W: Write> {
    out: Counting<W>,
    directory: BufWriter<File>,
    directory_len: u64,
    entries: u64,
}

impl<W: Write> StoredZip<W> {
    pub fn new(out: W) -> io::Result<StoredZip<W>> {
        Ok(StoredZip {
            out: Counting { inner: out, written: 0 },
            directory: BufWriter::new(tempfile::tempfile()?),
            directory_len: 0,
            entries: 0,
        })
    }

    /// An entry named `name` (ASCII, at most 65,535 bytes) holding `data` (under 4 GiB).
    pub fn add(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        let name_len = u16::try_from(name.len()).map_err(|_| io::Error::other("a ZIP entry's name is too long"))?;
        let size = u32::try_from(data.len())
            .ok()
            .filter(|s| *s < u32::MAX)
            .ok_or_else(|| io::Error::other("a ZIP entry of 4 GiB or more"))?;
        let crc = crc32fast::hash(data);
        let offset = self.out.written;

        let mut local = Vec::with_capacity(30 + name.len());
        local.extend_from_slice(&LOCAL_HEADER.to_le_bytes());
        for field in [VERSION, 0, 0, DOS_TIME, DOS_DATE] {
            local.extend_from_slice(&field.to_le_bytes());
        }
        for field in [crc, size, size] {
            local.extend_from_slice(&field.to_le_bytes());
        }
        local.extend_from_slice(&name_len.to_le_bytes());
        local.extend_from_slice(&0u16.to_le_bytes());
        local.extend_from_slice(name.as_bytes());
        self.out.write_all(&local)?;
        self.out.write_all(data)?;

        // its directory record, with its offset in a ZIP64 extra field once past 4 GiB
        let zip64 = offset >= u64::from(u32::MAX);
        let mut record = Vec::with_capacity(46 + name.len() + 12);
        record.extend_from_slice(&CENTRAL_HEADER.to_le_bytes());
        let needed = if zip64 { VERSION_ZIP64 } else { VERSION };
        for field in [VERSION_ZIP64, needed, 0, 0, DOS_TIME, DOS_DATE] {
            record.extend_from_slice(&field.to_le_bytes());
        }
        for field in [crc, size, size] {
            record.extend_from_slice(&field.to_le_bytes());
        }
        let extra_len: u16 = if zip64 { 12 } else { 0 };
        for field in [name_len, extra_len, 0, 0, 0] {
            record.extend_from_slice(&field.to_le_bytes());
        }
        record.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        record.extend_from_slice(&(if zip64 { u32::MAX } else { offset as u32 }).to_le_bytes());
        record.extend_from_slice(name.as_bytes());
        if zip64 {
            record.extend_from_slice(&1u16.to_le_bytes());
            record.extend_from_slice(&8u16.to_le_bytes());
            record.extend_from_slice(&offset.to_le_bytes());
        }
        self.directory.write_all(&record)?;
        self.directory_len += record.len() as u64;
        self.entries += 1;
        Ok(())
    }

    /// The directory and its end; answers the writer.
    pub fn finish(mut self) -> io::Result<W> {
        let directory_offset = self.out.written;
        let mut directory = self.directory.into_inner().map_err(|e| e.into_error())?;
        directory.rewind()?;
        let copied = io::copy(&mut directory, &mut self.out)?;
        if copied != self.directory_len {
            return Err(io::Error::other("the ZIP's directory was not copied whole"));
        }
        let (entries, size) = (self.entries, self.directory_len);
        let mut end = Vec::with_capacity(98);
        if entries >= u64::from(u16::MAX) || directory_offset >= u64::from(u32::MAX) || size >= u64::from(u32::MAX) {
            let zip64_end = self.out.written;
            end.extend_from_slice(&ZIP64_END_OF_DIRECTORY.to_le_bytes());
            end.extend_from_slice(&44u64.to_le_bytes());
            end.extend_from_slice(&VERSION_ZIP64.to_le_bytes());
            end.extend_from_slice(&VERSION_ZIP64.to_le_bytes());
            end.extend_from_slice(&0u32.to_le_bytes());
            end.extend_from_slice(&0u32.to_le_bytes());
            for field in [entries, entries, size, directory_offset] {
                end.extend_from_slice(&field.to_le_bytes());
            }
            end.extend_from_slice(&ZIP64_LOCATOR.to_le_bytes());
            end.extend_from_slice(&0u32.to_le_bytes());
            end.extend_from_slice(&zip64_end.to_le_bytes());
            end.extend_from_slice(&1u32.to_le_bytes());
        }
        // the classic end: a field too large for it holds its maximum, which sends readers to ZIP64's
        let entries16 = entries.min(u64::from(u16::MAX)) as u16;
        end.extend_from_slice(&END_OF_DIRECTORY.to_le_bytes());
        for field in [0, 0, entries16, entries16] {
            end.extend_from_slice(&field.to_le_bytes());
        }
        end.extend_from_slice(&(size.min(u64::from(u32::MAX)) as u32).to_le_bytes());
        end.extend_from_slice(&(directory_offset.min(u64::from(u32::MAX)) as u32).to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes());
        self.out.write_all(&end)?;
        self.out.flush()?;
        Ok(self.out.inner)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Read};

    use super::StoredZip;

    fn read(archive: &[u8], name: &str) -> Vec<u8> {
        let mut zip = zip::ZipArchive::new(Cursor::new(archive)).unwrap();
        let mut out = Vec::new();
        zip.by_name(name).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn the_zip_crate_reads_what_is_written() {
        let mut zip = StoredZip::new(Vec::new()).unwrap();
        zip.add("a.png", b"first").unwrap();
        zip.add("b.png", b"").unwrap();
        zip.add("c.png", &[7u8; 10_000]).unwrap();
        let archive = zip.finish().unwrap();
        assert_eq!(zip::ZipArchive::new(Cursor::new(&archive)).unwrap().len(), 3);
        assert_eq!(read(&archive, "a.png"), b"first");
        assert_eq!(read(&archive, "b.png"), b"");
        assert_eq!(read(&archive, "c.png"), vec![7u8; 10_000]);
        let empty = StoredZip::new(Vec::new()).unwrap().finish().unwrap();
        assert_eq!(zip::ZipArchive::new(Cursor::new(&empty)).unwrap().len(), 0);
    }

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([b[at], b[at + 1]])
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// Past 4 GiB of archive (too large to write in a test: the count of bytes written starts
    /// there), an entry's offset is in a ZIP64 extra field and the ends are ZIP64's.
    #[test]
    fn an_entry_past_4_gib_has_its_offset_in_a_zip64_extra_field() {
        let start = 5u64 << 30;
        let mut zip = StoredZip::new(Vec::new()).unwrap();
        zip.out.written = start;
        zip.add("a.png", b"first").unwrap();
        let archive = zip.finish().unwrap();
        let local_len = 30 + "a.png".len() + "first".len();
        let record = &archive[local_len..];
        assert_eq!(u32_at(record, 0), super::CENTRAL_HEADER);
        assert_eq!(u16_at(record, 6), super::VERSION_ZIP64, "version needed");
        assert_eq!(u16_at(record, 30), 12, "extra field length");
        assert_eq!(u32_at(record, 42), u32::MAX, "the offset is in the extra field");
        let extra = &record[46 + "a.png".len()..];
        assert_eq!((u16_at(extra, 0), u16_at(extra, 2), u64_at(extra, 4)), (1, 8, start));
        // then ZIP64's end (56 bytes), its locator (20) and the classic end (22) sending readers there
        let end64 = &record[46 + 5 + 12..];
        assert_eq!(u32_at(end64, 0), super::ZIP64_END_OF_DIRECTORY);
        assert_eq!(u64_at(end64, 4), 44);
        assert_eq!((u64_at(end64, 24), u64_at(end64, 32)), (1, 1), "entries");
        assert_eq!(u64_at(end64, 40), 46 + 5 + 12, "directory size");
        assert_eq!(u64_at(end64, 48), start + local_len as u64, "directory offset");
        let locator = &end64[56..];
        assert_eq!(u32_at(locator, 0), super::ZIP64_LOCATOR);
        assert_eq!(u64_at(locator, 8), start + local_len as u64 + 46 + 5 + 12, "ZIP64 end's offset");
        let end = &locator[20..];
        assert_eq!(u32_at(end, 0), super::END_OF_DIRECTORY);
        assert_eq!(u32_at(end, 16), u32::MAX, "directory offset: see ZIP64's");
        assert_eq!(end.len(), 22);
    }

    #[test]
    fn more_entries_than_a_classic_zip_holds_take_zip64s_end() {
        let mut zip = StoredZip::new(Vec::new()).unwrap();
        for i in 0..70_000u32 {
            zip.add(&format!("{i}.txt"), i.to_string().as_bytes()).unwrap();
        }
        let archive = zip.finish().unwrap();
        assert_eq!(zip::ZipArchive::new(Cursor::new(&archive)).unwrap().len(), 70_000);
        assert_eq!(read(&archive, "69999.txt"), b"69999");
        assert_eq!(read(&archive, "0.txt"), b"0");
    }
}
