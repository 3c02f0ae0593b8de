"""Reads a printer's order as the printer would, with tools independent of careledger: the XLSX
with openpyxl, every QR code image of the ZIP with zxing-cpp. Prints what it read as JSON:
{"sheets": {name: [[cell, ...], ...]}, "images": {file name: [decoded text, format] or null}}.

    bash tests/python.sh tests/printer_order_read.py ORDER.xlsx QR-CODES.zip
"""

import io
import json
import sys
import zipfile

import openpyxl
import zxingcpp
from PIL import Image


def main(xlsx_path, zip_path):
    book = openpyxl.load_workbook(xlsx_path, read_only=True)
    sheets = {
        sheet.title: [list(row) for row in sheet.iter_rows(values_only=True)] for sheet in book.worksheets
    }
    images = {}
    with zipfile.ZipFile(zip_path) as archive:
        for name in archive.namelist():
            image = Image.open(io.BytesIO(archive.read(name)))
            found = zxingcpp.read_barcodes(image)
            images[name] = [found[0].text, found[0].format.name] if found else None
    print(json.dumps({"sheets": sheets, "images": images}))


if __name__ == "__main__":
    main(*sys.argv[1:])
