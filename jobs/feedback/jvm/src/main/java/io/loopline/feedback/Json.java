package io.loopline.feedback;

import java.nio.charset.StandardCharsets;

/** A minimal JSON writer for the rows handed to the Python partition writer (json.loads). */
final class Json {
    private final StringBuilder out = new StringBuilder(256);
    private boolean first = true;

    Json() {
        out.append('{');
    }

    /** Names are Avro field names or our own: identifiers, never in need of escapes. */
    private StringBuilder key(String name) {
        if (!first) out.append(',');
        first = false;
        return out.append('"').append(name).append("\":");
    }

    Json put(String name, String value) {
        StringBuilder b = key(name);
        if (value == null) b.append("null"); else quote(b, value);
        return this;
    }

    Json put(String name, long value) {
        key(name).append(value);
        return this;
    }

    Json put(String name, Long value) {
        key(name).append(value == null ? "null" : value.toString());
        return this;
    }

    Json put(String name, Integer value) {
        key(name).append(value == null ? "null" : value.toString());
        return this;
    }

    Json put(String name, double value) {
        key(name).append(Double.toString(value)); // finite by validation
        return this;
    }

    /** A list of doubles, or null; NaN (a logged value the store did not have) as a null
     * element, since JSON has no NaN. */
    Json putDoubles(String name, double[] values) {
        StringBuilder b = key(name);
        if (values == null) {
            b.append("null");
            return this;
        }
        b.append('[');
        for (int i = 0; i < values.length; i++) {
            if (i > 0) b.append(',');
            b.append(Double.isFinite(values[i]) ? Double.toString(values[i]) : "null");
        }
        b.append(']');
        return this;
    }

    Json put(String name, boolean value) {
        key(name).append(value);
        return this;
    }

    String done() {
        return out.append('}').toString();
    }

    /** The object as UTF-8 bytes (a slice row's line). */
    byte[] bytes() {
        return done().getBytes(StandardCharsets.UTF_8);
    }

    static void quote(StringBuilder b, String s) {
        if (plain(s)) {
            b.append('"').append(s).append('"'); // ids and names: one copy, no per-char work
            return;
        }
        b.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                case '\r': b.append("\\r"); break;
                case '\t': b.append("\\t"); break;
                default:
                    if (c < 0x20) b.append(String.format("\\u%04x", (int) c)); else b.append(c);
            }
        }
        b.append('"');
    }

    private static boolean plain(String s) {
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c < 0x20 || c == '"' || c == '\\') return false;
        }
        return true;
    }
}
