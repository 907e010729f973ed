package io.loopline.feedback;

import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DatumReader;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.HashMap;
import java.util.Map;

/**
 * Avro single-object encoding with Avro's own Java library: C3 01 + the writer schema's
 * CRC-64-AVRO parsing fingerprint (little-endian) + the binary body. Writer schemas are
 * looked up by fingerprint and resolved into the reader's version, as schemas/codec.py does.
 */
final class SchemaBook {
    static final int HEADER_LEN = 10;

    private final Map<Long, Schema> writers = new HashMap<>();
    private final Map<String, Schema> readers = new HashMap<>();
    private final Map<Long, DatumReader<GenericRecord>> resolving = new HashMap<>();
    private final Map<String, GenericDatumWriter<GenericRecord>> encoders = new HashMap<>();
    private final Map<String, byte[]> headers = new HashMap<>();
    private BinaryDecoder decoder;
    private BinaryEncoder encoder;
    private final ByteArrayOutputStream buffer = new ByteArrayOutputStream(512);

    SchemaBook(Iterable<String> writerSchemas, Map<String, String> readerSchemas) {
        for (Map.Entry<String, String> e : readerSchemas.entrySet()) {
            Schema schema = new Schema.Parser().parse(e.getValue());
            readers.put(e.getKey(), schema);
            writers.put(SchemaNormalization.parsingFingerprint64(schema), schema);
            encoders.put(e.getKey(), new GenericDatumWriter<>(schema));
            headers.put(e.getKey(), header(SchemaNormalization.parsingFingerprint64(schema)));
        }
        for (String json : writerSchemas) {
            addWriter(json);
        }
    }

    /** Learn a writer schema; true if it was new. */
    boolean addWriter(String json) {
        Schema schema = new Schema.Parser().parse(json);
        return writers.putIfAbsent(SchemaNormalization.parsingFingerprint64(schema), schema) == null;
    }

    Schema reader(String name) {
        return readers.get(name);
    }

    /** The single-object header (marker + fingerprint) of `name`'s shipped schema. */
    byte[] header(String name) {
        return headers.get(name).clone();
    }

    static long fingerprintOf(byte[] data) {
        long fp = 0;
        for (int i = 9; i >= 2; i--) {
            fp = (fp << 8) | (data[i] & 0xffL);
        }
        return fp;
    }

    static String hex(long fingerprint) {
        StringBuilder out = new StringBuilder(16);
        for (int i = 0; i < 8; i++) {
            out.append(String.format("%02x", (fingerprint >>> (8 * i)) & 0xff));
        }
        return out.toString();
    }

    private static byte[] header(long fingerprint) {
        byte[] h = new byte[HEADER_LEN];
        h[0] = (byte) 0xC3;
        h[1] = (byte) 0x01;
        for (int i = 0; i < 8; i++) {
            h[2 + i] = (byte) (fingerprint >>> (8 * i));
        }
        return h;
    }

    static boolean hasHeader(byte[] data) {
        return data != null && data.length >= HEADER_LEN && data[0] == (byte) 0xC3 && data[1] == (byte) 0x01;
    }

    boolean knows(long fingerprint) {
        return writers.containsKey(fingerprint);
    }

    /**
     * Decode the body under its writer schema, resolved into `readerName`'s reader schema.
     * Throws DecodeFailure with a dead-letter reason on anything malformed.
     */
    GenericRecord decode(byte[] data, String readerName) throws DecodeFailure {
        long fp = fingerprintOf(data);
        Schema writer = writers.get(fp);
        Schema reader = readers.get(readerName);
        if (!writer.getFullName().equals(reader.getFullName())) {
            throw new DecodeFailure("DecodeError", "expected a " + reader.getName() + ", got a "
                    + writer.getName() + " (fingerprint " + hex(fp) + ")");
        }
        DatumReader<GenericRecord> datumReader = resolving.computeIfAbsent(fp, k -> new GenericDatumReader<>(writer, reader));
        decoder = DecoderFactory.get().binaryDecoder(data, HEADER_LEN, data.length - HEADER_LEN, decoder);
        GenericRecord record;
        try {
            record = datumReader.read(null, decoder);
        } catch (IOException | RuntimeException e) {
            throw new DecodeFailure("DecodeError", "corrupt " + writer.getName() + " body: "
                    + e.getClass().getSimpleName() + ": " + e.getMessage());
        }
        try {
            if (!decoder.isEnd()) {
                throw new DecodeFailure("DecodeError", writer.getName() + ": trailing bytes after the record");
            }
        } catch (IOException e) {
            throw new DecodeFailure("DecodeError", "corrupt " + writer.getName() + " body: " + e.getMessage());
        }
        return record;
    }

    /** Single-object encoding of `record` under the reader (shipped) schema of its name. */
    byte[] encode(String name, GenericRecord record) {
        buffer.reset();
        buffer.write(headers.get(name), 0, HEADER_LEN);
        encoder = EncoderFactory.get().directBinaryEncoder(buffer, encoder);
        try {
            encoders.get(name).write(record, encoder);
            encoder.flush();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return buffer.toByteArray();
    }

    GenericRecord newRecord(String name) {
        return new GenericData.Record(readers.get(name));
    }

    /** Why a record could not be decoded, in the DeadLetter contract's terms. */
    static final class DecodeFailure extends Exception {
        private static final long serialVersionUID = 1L;
        final String errorType;

        DecodeFailure(String errorType, String reason) {
            super(reason, null, false, false);
            this.errorType = errorType;
        }
    }
}
