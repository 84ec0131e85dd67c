-- A CompleteUpload that refused the uploaded file and could not delete it queued the object's key
-- while the pending attachment still held it; the client's corrected PUT to the same URL then
-- wrote that object, and the sweeper deleted it from under the completed attachment. The service
-- no longer queues a key an attachment holds (a held key's object goes with its attachment);
-- this forgets the entries queued that way before, so that none still due deletes such an object.
DELETE FROM storage_deletions d
USING attachments a
WHERE a.object_key = d.object_key;
