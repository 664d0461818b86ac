"""Reading documents: each format to text with exact offsets (formats), PDF pages with word boxes
(pdf, positions), OCR of scans and images (ocr), and page images with highlights (pages)."""
