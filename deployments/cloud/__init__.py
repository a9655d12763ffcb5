"""Cloud work pools: the AWS (ECS) and GCP (Cloud Run v2) infrastructure a node runs on."""
