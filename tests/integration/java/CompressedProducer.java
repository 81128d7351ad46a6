// A non-Python producer for the codec test: Kafka's own Java client, one codec per run.
// Usage: java -cp 'libs/*' CompressedProducer.java BOOTSTRAP TOPIC CODEC < lines
// Each input line is "key<TAB>value"; every record is sent with the given compression.

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

public class CompressedProducer {
    public static void main(String[] args) throws Exception {
        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        config.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, args[2]);
        config.put(ProducerConfig.ACKS_CONFIG, "all");
        // Many records per batch, so each batch is really compressed.
        config.put(ProducerConfig.LINGER_MS_CONFIG, "50");
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        java.util.List<java.util.concurrent.Future<?>> sends = new java.util.ArrayList<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(config);
             BufferedReader input = new BufferedReader(
                     new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
            String line;
            while ((line = input.readLine()) != null) {
                String[] parts = line.split("\t", 2);
                sends.add(producer.send(new ProducerRecord<>(args[1], parts[0], parts[1])));
            }
            producer.flush();
            for (java.util.concurrent.Future<?> send : sends) {
                send.get();  // every record acknowledged, or the run fails
            }
        }
        System.out.println("sent " + sends.size());
    }
}
