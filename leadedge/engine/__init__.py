"""The batch engine: `requests` records a whole fetch at a time, state written back per flush.

Faust's per-record path (a message object, a stream step, an ack, a table write with its
changelog send, a future per output record) costs far more than the merge itself. This
package takes `requests` off that path, the way Kafka Streams and Quix Streams run:

- `intake.BatchConsumer` hands each partition's fetched records to the engine as a list,
  and acknowledges them in bulk through Faust's own acked-offset bookkeeping, only once
  a flush has stored everything they caused;
- `write_back.WriteBackTable` keeps changed table values in a per-partition cache, read
  before the table's local store;
- `step.MergeStep` is the per-event work, once per event: validate, merge, enrich,
  history, per-minute count, dead letters;
- `flush.BatchEngine` writes each changed key once per flush (changelog, `merged-requests`,
  Elasticsearch, dead letters, stats partials) in batches, then the local stores, then
  acknowledges the offsets; on an interval, on size, before every commit and on revocation.
"""
