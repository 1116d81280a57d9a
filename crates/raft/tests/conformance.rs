//! openraft's storage conformance suite, run against the RocksDB stores.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use registry_raft::{
    open_store, ClusterIdentity, LogStore, StateMachineStore, StoreOptions, TypeConfig,
};
use tempfile::TempDir;

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<u64>> {
        let dir = tempfile::tempdir()
            .map_err(|e| StorageError::from(openraft::StorageIOError::write(&e)))?;
        let options = StoreOptions {
            // The suite opens hundreds of stores; fsync adds nothing to what
            // it checks (durability is covered by the cluster kill -9 tests).
            sync: false,
            ..StoreOptions::default()
        };
        let (log, sm, _shared) =
            open_store(dir.path(), 0, ClusterIdentity::ephemeral(None), options)
                .map_err(|e| StorageError::from(openraft::StorageIOError::write(&e)))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn rocksdb_store_passes_openraft_conformance_suite() {
    Suite::test_all(RocksBuilder).expect("storage conformance suite");
}
