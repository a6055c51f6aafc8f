"""Pure types shared by every layer: identifiers, debug file metadata. No I/O here."""
