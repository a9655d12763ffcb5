# A Numerai Classic model in base R: `Rscript model.R train|predict`, run by a command spec with
# `data_format: csv` (README, "Bring any program"). Ridge regression of the target on the
# feature set's features; no packages beyond R itself.
args <- commandArgs(trailingOnly = TRUE)
step <- if (length(args) == 1) args[[1]] else stop("usage: Rscript model.R train|predict")
env <- function(name) {
  value <- Sys.getenv(name)
  if (!nzchar(value)) stop(name, " is not set: run me from a Numerai node's command spec")
  value
}
model_path <- file.path(env("NUMERAI_MODEL_DIR"), "model.rds")

read_data <- function(path) {
  if (!grepl("\\.csv$", path)) stop(path, " is not CSV: give the spec `data_format: csv`")
  read.csv(path, check.names = FALSE, colClasses = c(id = "character"))
}

if (step == "train") {
  data <- read_data(env("NUMERAI_TRAIN_PATH"))
  target <- env("NUMERAI_TARGET")
  features <- grep("^feature_", names(data), value = TRUE)
  data <- data[!is.na(data[[target]]), ]
  x <- as.matrix(data[, features])
  centre <- colMeans(x)
  x <- sweep(x, 2, centre)
  y <- data[[target]] - mean(data[[target]])
  lambda <- 0.1 * nrow(x)  # ridge: shrinks the weights of noisy features
  weights <- solve(crossprod(x) + diag(lambda, ncol(x)), crossprod(x, y))
  saveRDS(list(features = features, centre = centre, weights = drop(weights)), model_path)
  cat(sprintf("trained on %d rows x %d features\n", nrow(x), ncol(x)))
} else if (step == "predict") {
  model <- readRDS(model_path)
  live <- read_data(env("NUMERAI_LIVE_PATH"))
  missing <- setdiff(model$features, names(live))
  if (length(missing) > 0) stop("live data lacks ", paste(head(missing, 5), collapse = ", "))
  x <- sweep(as.matrix(live[, model$features]), 2, model$centre)
  raw <- drop(x %*% model$weights)
  prediction <- (rank(raw, ties.method = "average") - 0.5) / length(raw)  # into (0, 1)
  out <- data.frame(id = live$id, prediction = prediction)
  write.csv(out, env("NUMERAI_PREDICTIONS_PATH"), row.names = FALSE, quote = FALSE)
  cat(sprintf("predicted %d rows for round %s\n", nrow(out), env("NUMERAI_ROUND")))
} else {
  stop("unknown step '", step, "': train or predict")
}
