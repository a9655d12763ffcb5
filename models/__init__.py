"""Pure modelling: feature engineering, fit, predict, save and load. No Prefect, no network."""
