package io.loopline.flink.metrics;

import java.util.Properties;

import org.apache.flink.metrics.MetricConfig;
import org.apache.flink.metrics.reporter.MetricReporter;
import org.apache.flink.metrics.reporter.MetricReporterFactory;
import org.apache.flink.util.PortRange;

/**
 * Flink's Prometheus reporter, bound to one address ({@code host}, default 127.0.0.1).
 *
 * <p>Flink's own {@code PrometheusReporterFactory} (2.2) always listens on every interface;
 * Loopline's local services bind to loopback only. Options: {@code host} and {@code port}
 * (a port or range, as Flink's: each JVM of a cluster takes the next free one).
 */
public class BoundPrometheusReporterFactory implements MetricReporterFactory {

    static final String ARG_HOST = "host";
    static final String ARG_PORT = "port";
    private static final String DEFAULT_HOST = "127.0.0.1";
    private static final String DEFAULT_PORT = "9249";

    @Override
    public MetricReporter createMetricReporter(Properties properties) {
        MetricConfig config = (MetricConfig) properties;
        String host = config.getString(ARG_HOST, DEFAULT_HOST);
        PortRange ports = new PortRange(config.getString(ARG_PORT, DEFAULT_PORT));
        return new BoundPrometheusReporter(host, ports);
    }
}
