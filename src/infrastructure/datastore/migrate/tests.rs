//! The migration's steps on real directories and the in-memory store.

use super::*;
use crate::domain::sync_index::{object_key, RemoteIndex, INDEX_KEY};
use crate::infrastructure::datastore::testing;
use crate::infrastructure::repo_files::init_repo;
use crate::infrastructure::s3::memory_store::MemoryStore;
use crate::infrastructure::s3::store::ObjectStore;
use std::fs;
use std::sync::Arc;

/// A repo with a filesystem datastore holding two files, and an S3
/// target on a fresh in-memory store.
struct Fixture {
    repo: tempfile::TempDir,
    home: tempfile::TempDir,
    store: Arc<MemoryStore>,
    source: Datastore,
    target: Datastore,
}

const FILES: [(&str, &[u8]); 2] = [("data/a/1", b"one"), ("outputs/b", b"two, longer")];

fn fixture() -> Fixture {
    let repo = tempfile::tempdir().unwrap();
    init_repo(repo.path()).unwrap();
    let root = repo.path().join(".swamp");
    for (rel, bytes) in FILES {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }
    let mut settings = testing::settings(Backend::Filesystem { path: root.clone() }, repo.path());
    settings.repo_id = load_config(repo.path()).unwrap().repo_id;
    let source = testing::filesystem(&settings, &root);
    let store = Arc::new(MemoryStore::default());
    let home = tempfile::tempdir().unwrap();
    let target = testing::s3(&settings, store.clone(), "bucket", "team", home.path());
    Fixture {
        repo,
        home,
        store,
        source,
        target,
    }
}

impl Fixture {
    fn config(&self) -> RepoConfig {
        load_config(self.repo.path()).unwrap()
    }

    async fn migrate(
        &self,
        from: &Datastore,
        to: &Datastore,
        merge: bool,
    ) -> Result<MigrationOutcome, SetupError> {
        let options = MigrateOptions {
            skip_migration: false,
            merge,
        };
        from.migrate_to(to, options, self.repo.path(), &self.config())
            .await
    }

    fn index(&self) -> RemoteIndex {
        self.store.index("team")
    }
}

#[tokio::test]
async fn to_s3_uploads_indexes_switches_the_config_then_removes_the_source() {
    let f = fixture();
    let outcome = f.migrate(&f.source, &f.target, false).await.unwrap();
    let report = outcome.report.unwrap();
    assert_eq!((report.files, report.already_present), (2, 0));
    assert!(outcome.conditional_writes.unwrap().is_sufficient());
    for (rel, bytes) in FILES {
        assert_eq!(f.store.object(&object_key("team", rel)).unwrap(), bytes);
        assert!(
            !f.source.root().join(rel).exists(),
            "{rel} left in the source"
        );
    }
    let index = f.index();
    assert_eq!(index.files.len(), 2);
    assert_eq!(
        index.repo_id.as_deref(),
        Some(f.config().repo_id.to_string().as_str())
    );
    let section = f.config().datastore.unwrap();
    assert_eq!(section.backend.as_ref(), Some(f.target.backend()));
}

#[tokio::test]
async fn from_s3_pulls_copies_and_deletes_the_objects_and_index() {
    let f = fixture();
    f.migrate(&f.source, &f.target, false).await.unwrap();
    let back = tempfile::tempdir().unwrap();
    let dest = back.path().join("store");
    let fs_target = f
        .target
        .target(Backend::Filesystem { path: dest.clone() })
        .await
        .unwrap();
    // Fresh cache: everything must come from the bucket.
    fs::remove_dir_all(f.home.path()).unwrap();
    let report = f
        .migrate(&f.target, &fs_target, false)
        .await
        .unwrap()
        .report
        .unwrap();
    assert_eq!(report.files, 2);
    for (rel, bytes) in FILES {
        assert_eq!(fs::read(dest.join(rel)).unwrap(), bytes);
    }
    let left: Vec<_> = f
        .store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.key)
        .collect();
    assert!(left.is_empty(), "left in the bucket: {left:?}");
    assert_eq!(
        f.config().datastore.unwrap().backend,
        Some(Backend::Filesystem { path: dest })
    );
}

#[tokio::test]
async fn an_occupied_target_is_refused_before_anything_changes() {
    let f = fixture();
    f.store.plant(&object_key("team", "data/theirs"), b"x");
    let before = f.config().document;
    let err = f.migrate(&f.source, &f.target, false).await.unwrap_err();
    assert!(
        matches!(&err, SetupError::Migration(MigrationError::Occupied { foreign, .. }) if foreign == &["data/theirs".to_string()]),
        "{err:?}"
    );
    assert_eq!(f.config().document, before);
    assert!(f.store.object(&object_key("team", "data/a/1")).is_none());
    // --merge combines them.
    let report = f
        .migrate(&f.source, &f.target, true)
        .await
        .unwrap()
        .report
        .unwrap();
    assert_eq!(report.files, 2);
}

/// An S3 failure keeps its source: the CLI reports the store's error, not
/// a generic migration failure; and nothing switches or is removed.
#[tokio::test]
async fn a_failed_upload_is_a_store_error_and_changes_no_config() {
    let f = fixture();
    f.store
        .fail_uploads
        .lock()
        .unwrap()
        .insert(object_key("team", "outputs/b"));
    let before = f.config().document;
    let err = f.migrate(&f.source, &f.target, false).await.unwrap_err();
    assert!(
        matches!(err, SetupError::Migration(MigrationError::Store(_))),
        "{err:?}"
    );
    assert_eq!(f.config().document, before);
    for (rel, _) in FILES {
        assert!(f.source.root().join(rel).exists(), "{rel} removed");
    }
}

#[tokio::test]
async fn the_same_datastore_or_one_inside_it_is_refused() {
    let f = fixture();
    let same = f.source.target(f.source.backend().clone()).await.unwrap();
    let err = f.migrate(&f.source, &same, false).await.unwrap_err();
    assert!(matches!(err, SetupError::SameDatastore(_)), "{err:?}");
    let inside = f
        .source
        .target(Backend::Filesystem {
            path: f.source.root().join("data/nested"),
        })
        .await
        .unwrap();
    let err = f.migrate(&f.source, &inside, false).await.unwrap_err();
    assert!(matches!(err, SetupError::TargetInside(_)), "{err:?}");
    assert!(!f.source.root().join("data/nested").exists());
}

#[tokio::test]
async fn a_config_changed_while_waiting_for_the_lock_is_refused() {
    let f = fixture();
    let read_before = f.config();
    let mut doc = read_before.document.clone();
    doc.insert("note".into(), "another setup ran".into());
    crate::infrastructure::repo_files::save_document(f.repo.path(), &doc).unwrap();
    let err = f
        .source
        .migrate_to(
            &f.target,
            MigrateOptions::default(),
            f.repo.path(),
            &read_before,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SetupError::ConfigChanged), "{err:?}");
    assert!(f.store.object(&object_key("team", "data/a/1")).is_none());
}

#[tokio::test]
async fn skip_migration_switches_the_config_only() {
    let f = fixture();
    let options = MigrateOptions {
        skip_migration: true,
        merge: false,
    };
    let outcome = f
        .source
        .migrate_to(&f.target, options, f.repo.path(), &f.config())
        .await
        .unwrap();
    assert!(outcome.report.is_none());
    assert_eq!(
        f.config().datastore.unwrap().backend.as_ref(),
        Some(f.target.backend())
    );
    assert!(f.source.root().join("data/a/1").exists());
    assert!(f.store.object(&object_key("team", "data/a/1")).is_none());
}

/// The migration's index write lands but its reply is lost, so the SDK's
/// retry is refused: the index there is ours, and the migration completes.
#[tokio::test]
async fn an_index_write_whose_reply_was_lost_is_adopted() {
    let f = fixture();
    f.store
        .lost_replies_for
        .lock()
        .unwrap()
        .insert(object_key("team", INDEX_KEY));
    let outcome = f.migrate(&f.source, &f.target, false).await.unwrap();
    assert_eq!(outcome.report.unwrap().files, 2);
    assert!(
        f.store.lost_replies_for.lock().unwrap().is_empty(),
        "the reply was lost"
    );
    assert_eq!(f.index().files.len(), 2);
    let section = f.config().datastore.unwrap();
    assert_eq!(section.backend.as_ref(), Some(f.target.backend()));
}
