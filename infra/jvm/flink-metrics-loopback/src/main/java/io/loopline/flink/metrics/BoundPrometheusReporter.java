package io.loopline.flink.metrics;

import java.io.IOException;
import java.lang.reflect.Field;
import java.net.InetSocketAddress;
import java.util.Iterator;

import io.prometheus.client.CollectorRegistry;
import io.prometheus.client.exporter.HTTPServer;
import org.apache.flink.metrics.prometheus.AbstractPrometheusReporter;
import org.apache.flink.util.PortRange;

/**
 * Serves the metrics of Flink's {@link AbstractPrometheusReporter} (same names, labels and
 * types as Flink's PrometheusReporter) on one address instead of the wildcard address.
 */
public class BoundPrometheusReporter extends AbstractPrometheusReporter {

    private final HTTPServer httpServer;
    private final int port;

    BoundPrometheusReporter(String host, PortRange ports) {
        CollectorRegistry registry = collectorRegistry();
        HTTPServer server = null;
        int bound = -1;
        Iterator<Integer> candidates = ports.getPortsIterator();
        while (server == null && candidates.hasNext()) {
            int candidate = candidates.next();
            try {
                server = new HTTPServer(new InetSocketAddress(host, candidate), registry);
                bound = candidate;
            } catch (IOException busy) {
                log.debug("Prometheus endpoint {}:{} is taken, trying the next port", host, candidate);
            }
        }
        if (server == null) {
            throw new RuntimeException(
                    "Could not start the Prometheus endpoint on " + host + " at any port of " + ports);
        }
        httpServer = server;
        port = bound;
        log.info("Started the Prometheus endpoint on {}:{}", host, port);
    }

    /** The registry the base class fills; package-private there, so read reflectively. */
    private CollectorRegistry collectorRegistry() {
        try {
            Field field = AbstractPrometheusReporter.class.getDeclaredField("registry");
            field.setAccessible(true);
            return (CollectorRegistry) field.get(this);
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException(
                    "AbstractPrometheusReporter has no 'registry' field: Flink version changed?", e);
        }
    }

    int getPort() {
        return port;
    }

    @Override
    public void close() {
        httpServer.stop();
        super.close();
    }
}
