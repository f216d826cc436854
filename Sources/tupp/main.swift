print("tupp")
