"""How leadedge connects to Kafka and Elasticsearch: settings in, clients out."""
